# For Packer 1.7 and newer only: `packer init packer/plugins` installs the vSphere plugin that
# the templates use. Debian's Packer 1.6.6 has vsphere-iso built in and rejects this block, so
# it sits outside every template folder (packer validate/build load a whole folder).
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    vsphere = {
      source  = "github.com/hashicorp/vsphere"
      version = ">= 1.2.0, < 2.0.0"
    }
  }
}
