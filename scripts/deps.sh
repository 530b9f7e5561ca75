#!/usr/bin/env bash
# Installs what gen2vm needs on Debian 12. Usage: scripts/deps.sh build|test
set -euo pipefail
what=${1:-build}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
build_pkgs="build-essential busybox-static pkg-config libssl-dev libjson-c-dev libpng-dev liburing-dev liblz4-dev zlib1g-dev liblzma-dev libzstd-dev libvncserver-dev novnc"
test_pkgs="dnsmasq-base ovmf sbsigntool efitools osslsigncode tesseract-ocr tesseract-ocr-eng python3-numpy iproute2 iputils-ping xorriso dosfstools mtools fdisk grub-efi-amd64-bin grub-common libcmocka-dev python3-pytest acpica-tools busybox-static cpio e2fsprogs qemu-utils clang xz-utils zstd lz4 qemu-system-x86 python3-pytest-timeout python3-pytest-rerunfailures efibootmgr vncsnapshot xvfb xdotool tigervnc-viewer chromium chromium-driver"
pkgs=$build_pkgs
[ "$what" = test ] && pkgs="$build_pkgs $test_pkgs"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The real-client tests and the demo fetch Debian's cloud kernel with apt-get download: make sure the
# package lists know it.
if ! apt-cache policy linux-image-cloud-amd64 2>/dev/null | grep -q "Candidate: [0-9]"; then
	$SUDO apt-get update -qq
fi
