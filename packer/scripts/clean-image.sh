#!/bin/bash
# Removes everything that must be unique per clone or that the build left behind: the install
# user, cloud-init state, machine-id, SSH host keys, logs and package caches.
# Runs inside the installed system, last.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

install_user=${INSTALL_USER:-builder}
if id "$install_user" >/dev/null 2>&1; then
    userdel --remove "$install_user"
fi
rm -f "/etc/sudoers.d/$install_user"

apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/*

cloud-init clean --logs --seed

# An empty machine-id makes systemd generate a new one on each clone's first boot.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id

# cloud-init generates new host keys on first boot.
rm -f /etc/ssh/ssh_host_*

rm -rf /var/log/installer
find /var/log -type f -exec truncate -s 0 {} +
rm -f /root/.bash_history
rm -rf /tmp/*
