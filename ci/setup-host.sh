#!/usr/bin/env bash
# Installs the host packages dangle needs on Debian 12 (bookworm):
# QEMU 10 from bookworm-backports (7.2 never offers VIRTIO_GPIO_F_IRQ),
# Debian's linux-source-6.12 and the kernel build dependencies.
# Idempotent; run as root (or with sudo available).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "setup-host: must run as root or with sudo" >&2; exit 2
    fi
fi

. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
    echo "setup-host: written for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}" >&2
fi

BACKPORTS=/etc/apt/sources.list.d/dangle-bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO tee "$BACKPORTS" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q -t bookworm-backports qemu-system-x86
$SUDO apt-get install -y -q --no-install-recommends \
    linux-source-6.12 flex bison bc libelf-dev libssl-dev dwarves cpio ccache \
    make gcc xz-utils patch busybox-static i2c-tools gpiod
qemu-system-x86_64 --version | head -n1
ls /usr/src/linux-source-6.12*.tar.xz
