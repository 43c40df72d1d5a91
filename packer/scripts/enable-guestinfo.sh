#!/bin/bash
# Makes cloud-init read CAPV's bootstrap data from VMware guestinfo on the cloned nodes,
# instead of the installer's NoCloud seed. Runs inside the installed system.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get install -y cloud-init open-vm-tools

# cloud-init 21.3 and newer ship the VMware (guestinfo) datasource.
if ! python3 -c 'import cloudinit.sources.DataSourceVMware' 2>/dev/null; then
    echo "enable-guestinfo: this cloud-init has no VMware datasource (needs 21.3+)" >&2
    exit 1
fi

# The installer's own cloud-init settings must not apply to clones.
rm -f /etc/cloud/cloud.cfg.d/99-installer.cfg \
      /etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg \
      /etc/cloud/ds-identify.cfg

cat > /etc/cloud/cloud.cfg.d/90-ovapipe-datasource.cfg <<'CONF'
# Written by ovapipe: CAPV passes user-data and metadata through VMware guestinfo.
datasource_list: [ VMware, OVF, None ]
CONF
