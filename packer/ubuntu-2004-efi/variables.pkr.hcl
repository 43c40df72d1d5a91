# Input variables. ovapipe's `invoke vars` reads this file (python-hcl2) to know which keys
# exist and which need a value; vars/schema.json describes the same keys with types and ranges.

# --- vSphere connection and placement (image-builder's names) -------------------------------

variable "vcenter_server" {
  type        = string
  description = "vCenter host name, optionally host:port (env VSPHERE_SERVER)."
}

variable "username" {
  type        = string
  description = "vCenter user (env VSPHERE_USERNAME)."
}

variable "password" {
  type        = string
  sensitive   = true
  description = "vCenter password: only ever from the environment (PKR_VAR_password)."
}

variable "insecure_connection" {
  type        = bool
  default     = false
  description = "Skip TLS verification in Packer (ovapipe pins the thumbprint itself)."
}

variable "datacenter" {
  type        = string
  description = "Datacenter (env VSPHERE_DATACENTER)."
}

variable "cluster" {
  type        = string
  description = "Cluster that runs the build VM (env VSPHERE_CLUSTER)."
}

variable "host" {
  type        = string
  default     = ""
  description = "Optional ESXi host inside the cluster."
}

variable "resource_pool" {
  type        = string
  default     = ""
  description = "Optional resource pool (env VSPHERE_RESOURCE_POOL)."
}

variable "datastore" {
  type        = string
  description = "Datastore for the build VM (env VSPHERE_DATASTORE)."
}

variable "network" {
  type        = string
  description = "Port group for the build VM's NIC (env VSPHERE_NETWORK)."
}

variable "folder" {
  type        = string
  default     = ""
  description = "VM folder for the build VM (env VSPHERE_FOLDER)."
}

# --- virtual hardware ------------------------------------------------------------------------

variable "vm_name" {
  type        = string
  description = "Name of the build VM and of the OVA (output/NAME/NAME.ova)."
}

variable "vmx_version" {
  type        = number
  description = "Virtual hardware version; GPU profiles need 17 or newer."
}

variable "firmware" {
  type        = string
  description = "efi or bios; GPU profiles need efi (64-bit MMIO)."
}

variable "guest_os_type" {
  type        = string
  default     = "ubuntu64Guest"
  description = "vSphere guest OS identifier."
}

variable "cpus" {
  type        = number
  default     = 2
  description = "Virtual CPUs of the build VM."
}

variable "memory" {
  type        = number
  default     = 4096
  description = "Memory of the build VM in MiB."
}

variable "disk_size" {
  type        = number
  default     = 20480
  description = "System disk size in MiB."
}

variable "disk_thin_provisioned" {
  type        = bool
  default     = true
  description = "Thin-provision the system disk."
}

# --- installer ---------------------------------------------------------------------------------

variable "iso_url" {
  type        = string
  default     = ""
  description = "Ubuntu live-server ISO to download and upload (empty: use iso_paths)."
}

variable "iso_checksum" {
  type        = string
  default     = ""
  description = "Checksum of iso_url, e.g. sha256:<hex> (required with iso_url)."
}

variable "iso_paths" {
  type        = list(string)
  default     = []
  description = "ISO already on a datastore, e.g. [\"[datastore1] iso/ubuntu.iso\"]."
}

variable "boot_wait" {
  type        = string
  default     = "10s"
  description = "Time between power-on and typing the GRUB boot command."
}

variable "shutdown_timeout" {
  type        = string
  default     = "60m"
  description = "How long the unattended install may take before it powers the VM off."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes release installed in the image, e.g. 1.30.5."
}

variable "containerd_version" {
  type        = string
  description = "containerd release recorded in the image's ProductSection and image-builder export."
}

variable "cni_version" {
  type        = string
  description = "CNI plugins release recorded in the image (image-builder's kubernetes_cni_semver)."
}
