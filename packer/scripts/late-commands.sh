#!/bin/sh
# Runs in the Ubuntu live installer after the system was installed into TARGET: copies the
# provisioning scripts from the seed CD into the target and runs each one inside it.
# Usage: late-commands.sh SEED_DIR TARGET_DIR
set -eu

seed=$1
target=$2

# Packer types the Kubernetes version into the GRUB command line (see source.pkr.hcl).
kubernetes_version=$(sed -n 's/.*ovapipe\.kubernetes_version=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -z "$kubernetes_version" ]; then
    echo "late-commands: ovapipe.kubernetes_version=... missing from the kernel command line" >&2
    exit 1
fi

work=/var/tmp/ovapipe
mkdir -p "$target$work"
for script in install-containerd.sh install-kubernetes.sh enable-guestinfo.sh clean-image.sh; do
    cp "$seed/$script" "$target$work/$script"
done

for script in install-containerd.sh install-kubernetes.sh enable-guestinfo.sh clean-image.sh; do
    echo "late-commands: running $script"
    curtin in-target --target="$target" -- \
        env KUBERNETES_VERSION="$kubernetes_version" INSTALL_USER=builder \
        bash "$work/$script"
done

rm -rf "${target:?}$work"
