#!/bin/bash
# Installs containerd from the Ubuntu archive, configured for kubeadm (systemd cgroups), and
# the kernel settings Kubernetes networking needs. Runs inside the installed system.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get install -y containerd

mkdir -p /etc/containerd
containerd config default > /etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
systemctl enable containerd

cat > /etc/modules-load.d/kubernetes.conf <<'CONF'
overlay
br_netfilter
CONF

cat > /etc/sysctl.d/99-kubernetes.conf <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
