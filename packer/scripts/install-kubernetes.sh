#!/bin/bash
# Installs kubeadm, kubelet and kubectl at KUBERNETES_VERSION (e.g. 1.30.5) from
# pkgs.k8s.io and holds them. Runs inside the installed system.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

: "${KUBERNETES_VERSION:?set KUBERNETES_VERSION, e.g. 1.30.5}"
version=${KUBERNETES_VERSION#v}
series=${version%.*}
repository="https://pkgs.k8s.io/core:/stable:/v${series}/deb/"
keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg

apt-get update
apt-get install -y apt-transport-https ca-certificates curl gpg
install -d -m 0755 /etc/apt/keyrings
curl -fsSL "${repository}Release.key" | gpg --dearmor --yes -o "$keyring"
echo "deb [signed-by=$keyring] $repository /" > /etc/apt/sources.list.d/kubernetes.list
apt-get update

package_version=$(apt-cache madison kubeadm \
    | awk -v want="$version-" '{ if (index($3, want) == 1) { print $3; exit } }')
if [ -z "$package_version" ]; then
    echo "install-kubernetes: kubeadm $version is not in $repository" >&2
    exit 1
fi

apt-get install -y \
    "kubelet=$package_version" "kubeadm=$package_version" "kubectl=$package_version"
apt-mark hold kubelet kubeadm kubectl
systemctl enable kubelet
