# The build VM. Provisioning runs inside Ubuntu's unattended install (autoinstall
# late-commands), which powers the VM off when done; Packer never needs the guest's IP or SSH,
# so the same template finishes on a real vCenter and on the govmomi simulator.

source "vsphere-iso" "node" {
  vcenter_server      = var.vcenter_server
  username            = var.username
  password            = var.password
  insecure_connection = var.insecure_connection

  datacenter    = var.datacenter
  cluster       = var.cluster
  host          = var.host
  resource_pool = var.resource_pool
  datastore     = var.datastore
  folder        = var.folder

  vm_name       = var.vm_name
  vm_version    = var.vmx_version
  firmware      = var.firmware
  guest_os_type = var.guest_os_type
  notes         = "Kubernetes ${var.kubernetes_version} node image built by ovapipe"

  CPUs                 = var.cpus
  RAM                  = var.memory
  disk_controller_type = ["pvscsi"]
  storage {
    disk_size             = var.disk_size
    disk_thin_provisioned = var.disk_thin_provisioned
  }
  network_adapters {
    network      = var.network
    network_card = "vmxnet3"
  }

  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum
  iso_paths    = var.iso_paths
  cdrom_type   = "sata"
  remove_cdrom = true

  # NoCloud seed: cloud-init in the live installer finds the volume by its label.
  cd_files = [
    "${path.root}/autoinstall/meta-data",
    "${path.root}/autoinstall/user-data",
    "${path.root}/../scripts/*.sh",
  ]
  cd_label = "cidata"

  # An explicit boot order: Packer otherwise sets a temporary one and resets it afterwards.
  boot_order = "disk,cdrom"
  boot_wait  = var.boot_wait
  # EFI GRUB of the live-server ISO: open its command line and boot the installer with
  # autoinstall. Kernel arguments before `---` reach the late-commands via /proc/cmdline.
  boot_command = [
    "c<wait>",
    "linux /casper/vmlinuz autoinstall ovapipe.kubernetes_version=${var.kubernetes_version} ---<enter><wait>",
    "initrd /casper/initrd<enter><wait>",
    "boot<enter>",
  ]

  communicator     = "none"
  shutdown_timeout = var.shutdown_timeout

  convert_to_template = false
  create_snapshot     = false
}
