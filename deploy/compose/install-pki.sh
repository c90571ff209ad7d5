#!/usr/bin/env bash
# Copy what the compose stack needs from a PKI directory (deploy/mosquitto/pki.py) and
# generate the broker ACL from the site directories:
#
#   ./install-pki.sh PKI_DIR SITE_DIR...
#
# ./pki/broker/  ca.crt server.crt server.key crl.pem acl   (group 1883 = mosquitto, 0640)
# ./pki/server/  ca.crt window.crt window.key  (the ww-server identity; key gid 10001, 0640)
set -euo pipefail

[[ $# -ge 2 ]] || {
    echo "usage: $0 PKI_DIR SITE_DIR..." >&2
    exit 1
}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PKI=$1
shift
for f in ca.crt crl.pem server/server.crt server/server.key clients/ww-server/window.crt; do
    [[ -f $PKI/$f ]] || {
        echo "$PKI/$f missing: see deploy/mosquitto/README.md" >&2
        exit 1
    }
done
mkdir -p "$HERE/pki/broker" "$HERE/pki/server"
install -m 0640 "$PKI/ca.crt" "$PKI/server/server.crt" "$PKI/server/server.key" \
    "$PKI/crl.pem" "$HERE/pki/broker/"
python3 "$HERE/../mosquitto/acl.py" "$@" --out "$HERE/pki/broker/acl"
chmod 0640 "$HERE/pki/broker/acl"
# Mosquitto reads these after dropping root, as uid/gid 1883 in the official image.
if [[ $EUID -eq 0 ]]; then
    chgrp -R 1883 "$HERE/pki/broker"
else
    echo "note: run 'sudo chgrp -R 1883 $HERE/pki/broker' so Mosquitto can read its key" >&2
fi
install -m 0644 "$PKI/ca.crt" "$PKI/clients/ww-server/window.crt" "$HERE/pki/server/"
# The server container runs as uid/gid 10001 (Dockerfile); compose mounts file secrets
# with the host's owner and mode.
install -m 0640 "$PKI/clients/ww-server/window.key" "$HERE/pki/server/"
if [[ $EUID -eq 0 ]]; then
    chgrp 10001 "$HERE/pki/server/window.key"
else
    echo "note: run 'sudo chgrp 10001 $HERE/pki/server/window.key'" >&2
fi
echo "installed into $HERE/pki"
