#!/usr/bin/env bash
# A Debian bookworm root to test the package in (deploy/deb/test-install.sh):
#
#   sudo deploy/deb/make-root.sh amd64 /var/tmp/ww-deb/amd64
#   sudo deploy/deb/make-root.sh arm64 /var/tmp/ww-deb/arm64    # qemu-user-static, binfmt_misc
#
# debootstrap --variant=minbase with python3, as on Raspberry Pi OS Lite (Python 3.11 at
# /usr/bin/python3). A root that is already there (its /usr/bin/python3) is left as it is.
set -euo pipefail

ARCH=${1:?arch: amd64 or arm64}
DIR=${2:?directory}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if [[ -x $DIR/usr/bin/python3 ]]; then
    echo "make-root: $DIR exists"
    exit 0
fi
if [[ $ARCH != "$(dpkg --print-architecture)" ]]; then
    [[ $ARCH == arm64 ]] || { echo "make-root: amd64 or arm64, not $ARCH" >&2; exit 2; }
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || {
        echo "make-root: no qemu-aarch64 in binfmt_misc (apt install qemu-user-static binfmt-support)" >&2
        exit 2
    }
fi
mkdir -p "$(dirname "$DIR")"
debootstrap --arch="$ARCH" --variant=minbase --include=python3 bookworm "$DIR" "$MIRROR"
