# Packer 1.6.6 (Debian) accepts `required_version` but not `required_plugins`; current Packer's
# plugin requirement lives in ../plugins/ (see ../README.md).
packer {
  required_version = ">= 1.6.6"
}

build {
  sources = ["source.vsphere-iso.node"]
}
