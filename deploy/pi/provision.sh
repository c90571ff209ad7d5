#!/usr/bin/env bash
# Turn a fresh Raspberry Pi OS (Bookworm, 64-bit Lite) into a WarmWindow window terminal.
#
#   sudo deploy/pi/provision.sh --site-dir firmware_config/sites/qingpu --window w03 \
#        --tls-dir pki/clients/qingpu-w03 --bundle-key bundle-signing.pub [--wired] \
#        [--clerk-directory qingpu-clerks.json]
#
# Run it from a checkout of the repository on the Pi (or copy the checkout there first).
# It is idempotent: running it again updates the agent, the config and the boot block.
# Reboot afterwards when it says so (boot settings change).
#
# What it does, in order:
#   1. apt: python3-venv, python3-picamera2, python3-lgpio, python3-evdev (the badge
#      reader; pip would otherwise compile it), mosquitto-clients
#   2. a system user "warmwindow" in the gpio, video and input (badge reader) groups
#   3. the source in /opt/warmwindow/src, a venv with --system-site-packages (picamera2
#      and lgpio come from apt, everything else from pip) and the agent installed in it
#   4. /etc/warmwindow: the site directory, agent.env (which window), TLS files from
#      deploy/mosquitto/pki.py, the bundle-signing public key, and the centre's clerk
#      directory for badge/PIN sign-in (`warmwindow clerks directory`) when given
#   5. the models seeded as the first bundle release in /var/lib/warmwindow/bundles
#   6. the systemd unit (Type=notify, WatchdogSec=30), journald limits, systemd feeding
#      the hardware watchdog, the boot block in config.txt (camera, watchdog, radios)
#   7. swap off (SD-card wear), then `warmwindow config check` on the installed site
#
# --root DIR writes every file under DIR instead of / and only prints the commands that
# would change the running system (apt, useradd, pip, systemctl): for building images
# and for tests/deploy/test_provision.py. --dry-run alone prints those commands.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)

ROOT=""
DRY_RUN=0
SITE_DIR=""
WINDOW=""
TLS_DIR=""
BUNDLE_KEY=""
WIRED=0
CLERKS=""
KEEP_SWAP=0
PREFIX=/opt/warmwindow
PY=python3

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --site-dir DIR     site directory (site.toml + windows/*.toml)           (required)
  --window SLUG      this terminal's window, e.g. w03                       (required)
  --tls-dir DIR      ca.crt, window.crt, window.key for this window         (required)
  --bundle-key FILE  Ed25519 public key that signs update bundles          (required)
  --wired            turn Wi-Fi and Bluetooth off (terminal on Ethernet)
  --clerk-directory FILE  the centre's clerk directory (badge/PIN sign-in at the terminal)
  --keep-swap        leave the swap file on
  --root DIR         install into DIR (image building, tests); implies --dry-run for commands
  --dry-run          print system-changing commands instead of running them
EOF
}

die() {
    echo "provision: $*" >&2
    exit 1
}

log() {
    echo "==> $*"
}

# run CMD...: execute, or print it when dry-running.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '[dry-run]'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --site-dir) SITE_DIR=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --tls-dir) TLS_DIR=$2; shift 2 ;;
        --bundle-key) BUNDLE_KEY=$2; shift 2 ;;
        --wired) WIRED=1; shift ;;
        --clerk-directory) CLERKS=$2; shift 2 ;;
        --keep-swap) KEEP_SWAP=1; shift ;;
        --root) ROOT=$(realpath -m "$2"); DRY_RUN=1; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ -n $SITE_DIR && -n $WINDOW && -n $TLS_DIR && -n $BUNDLE_KEY ]] || {
    usage >&2
    die "--site-dir, --window, --tls-dir and --bundle-key are required"
}
[[ $WINDOW =~ ^[a-z0-9][a-z0-9-]{0,31}$ ]] || die "bad window slug: $WINDOW"
[[ -f $SITE_DIR/site.toml ]] || die "$SITE_DIR/site.toml not found"
[[ -f $SITE_DIR/windows/$WINDOW.toml ]] || die "no window file $SITE_DIR/windows/$WINDOW.toml"
for f in ca.crt window.crt window.key; do
    [[ -f $TLS_DIR/$f ]] || die "$TLS_DIR/$f not found (deploy/mosquitto/pki.py site ...)"
done
[[ -f $BUNDLE_KEY ]] || die "$BUNDLE_KEY not found (warmwindow bundle keygen)"
[[ -z $CLERKS || -f $CLERKS ]] || die "$CLERKS not found (warmwindow clerks directory)"
if [[ -z $ROOT && $DRY_RUN -eq 0 && $EUID -ne 0 ]]; then
    die "run as root (sudo), or with --dry-run / --root DIR"
fi
if ! grep -q '^\[broker\.tls\]' "$SITE_DIR/site.toml"; then
    echo "provision: warning: $SITE_DIR/site.toml has no [broker.tls]; the terminal will" \
        "connect without TLS, which the production broker refuses" >&2
fi

ETC=$ROOT/etc/warmwindow
STATE=$ROOT/var/lib/warmwindow
UNIT_DIR=$ROOT/etc/systemd/system
NEED_REBOOT=0

# install_file MODE OWNER:GROUP SRC DST: copy with mode; ownership only on a real system.
install_file() {
    local mode=$1 owner=$2 src=$3 dst=$4
    mkdir -p "$(dirname "$dst")"
    install -m "$mode" "$src" "$dst"
    if [[ -z $ROOT && $DRY_RUN -eq 0 ]]; then
        chown "$owner" "$dst"
    fi
}

# --- 1. packages -----------------------------------------------------------------------
log "apt packages"
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    python3-venv python3-picamera2 python3-lgpio python3-evdev mosquitto-clients rsync

# --- 2. user ---------------------------------------------------------------------------
log "system user warmwindow (groups gpio, video, input)"
if [[ -n $ROOT || $DRY_RUN -eq 1 ]] || ! id warmwindow >/dev/null 2>&1; then
    run useradd --system --home-dir /var/lib/warmwindow --no-create-home \
        --shell /usr/sbin/nologin --groups gpio,video,input warmwindow
fi

# --- 3. source, venv, agent ------------------------------------------------------------
log "source in $PREFIX/src, venv in $PREFIX/venv"
mkdir -p "$ROOT$PREFIX/src"
# The checkout minus what is local to this machine (venvs, caches, var/).
run rsync -a --delete --exclude .git --exclude '.venv*' --exclude __pycache__ \
    --exclude .mypy_cache --exclude .ruff_cache --exclude .pytest_cache --exclude var \
    "$REPO/" "$ROOT$PREFIX/src/"
# --system-site-packages: picamera2 (libcamera bindings) and lgpio exist only as Raspberry
# Pi OS packages. numpy < 2: apt's picamera2/simplejpeg are built against Bookworm's
# numpy 1.x, and a numpy 2 in the venv would shadow it and break their ABI.
run "$PY" -m venv --system-site-packages "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --disable-pip-version-check --upgrade pip
run "$PREFIX/venv/bin/pip" install --disable-pip-version-check "numpy>=1.26,<2" \
    "$PREFIX/src[agent]"

# --- 4. configuration ------------------------------------------------------------------
log "configuration in /etc/warmwindow"
mkdir -p "$ETC/site/windows" "$ETC/tls"
install_file 0644 root:root "$SITE_DIR/site.toml" "$ETC/site/site.toml"
# Only this terminal's window file: a stolen SD card reveals one window, not the hall.
rm -f "$ETC/site/windows/"*.toml
install_file 0644 root:root "$SITE_DIR/windows/$WINDOW.toml" "$ETC/site/windows/$WINDOW.toml"
install_file 0644 root:root "$TLS_DIR/ca.crt" "$ETC/tls/ca.crt"
install_file 0644 root:root "$TLS_DIR/window.crt" "$ETC/tls/window.crt"
# The key is readable by the agent's group only.
install_file 0640 root:warmwindow "$TLS_DIR/window.key" "$ETC/tls/window.key"
install_file 0644 root:root "$BUNDLE_KEY" "$ETC/bundle-signing.pub"
if [[ -n $CLERKS ]]; then
    # Salted digests of short secrets: readable by the agent's group only.
    install_file 0640 root:warmwindow "$CLERKS" "$ETC/clerks.json"
fi
tmp_env=$(mktemp)
cat >"$tmp_env" <<EOF
# Written by deploy/pi/provision.sh. Which window this terminal serves.
WW_WINDOW=$WINDOW
WW_BUNDLE_KEY=/etc/warmwindow/bundle-signing.pub
EOF
[[ -z $CLERKS ]] || echo "WW_CLERK_DIRECTORY=/etc/warmwindow/clerks.json" >>"$tmp_env"
install_file 0644 root:root "$tmp_env" "$ETC/agent.env"
rm -f "$tmp_env"

# --- 5. models as the first bundle release ---------------------------------------------
log "seed the packaged models as bundle release 0"
mkdir -p "$STATE/bundles/releases/0-packaged"
for f in face_detector.onnx smile.onnx manifest.json; do
    [[ -f $REPO/models/$f ]] || die "models/$f missing from the checkout"
    install -m 0644 "$REPO/models/$f" "$STATE/bundles/releases/0-packaged/$f"
done
if [[ ! -L $STATE/bundles/current ]]; then
    ln -s releases/0-packaged "$STATE/bundles/current"
fi
if [[ -z $ROOT && $DRY_RUN -eq 0 ]]; then
    chown -R warmwindow:warmwindow "$STATE"
    chmod 0750 "$STATE"
fi

# --- 6. systemd, journald, watchdog, boot settings -------------------------------------
log "systemd unit, journald limits, hardware watchdog"
install_file 0644 root:root "$REPO/deploy/systemd/warmwindow-agent.service" \
    "$UNIT_DIR/warmwindow-agent.service"
install_file 0644 root:root "$REPO/firmware_config/pi/journald.conf" \
    "$ROOT/etc/systemd/journald.conf.d/warmwindow.conf"
install_file 0644 root:root "$REPO/firmware_config/pi/systemd-watchdog.conf" \
    "$ROOT/etc/systemd/system.conf.d/warmwindow-watchdog.conf"

log "boot settings (config.txt)"
if [[ -f $ROOT/boot/firmware/config.txt ]]; then
    BOOT_CONFIG=$ROOT/boot/firmware/config.txt # Bookworm
elif [[ -f $ROOT/boot/config.txt ]]; then
    BOOT_CONFIG=$ROOT/boot/config.txt # Bullseye and older
else
    die "no config.txt under $ROOT/boot/firmware or $ROOT/boot"
fi
block=$(mktemp)
{
    echo "# >>> warmwindow (deploy/pi/provision.sh; edits here are replaced)"
    grep -v '^#' "$REPO/firmware_config/pi/config.txt" | sed '/^$/d'
    if [[ $WIRED -eq 1 ]]; then
        grep -v '^#' "$REPO/firmware_config/pi/config-wired.txt" | sed '/^$/d'
    fi
    echo "# <<< warmwindow"
} >"$block"
new_config=$(mktemp)
# Everything outside our markers stays as the OS image wrote it.
sed '/^# >>> warmwindow/,/^# <<< warmwindow/d' "$BOOT_CONFIG" >"$new_config"
cat "$block" >>"$new_config"
if ! cmp -s "$new_config" "$BOOT_CONFIG"; then
    cp "$BOOT_CONFIG" "$BOOT_CONFIG.before-warmwindow"
    cat "$new_config" >"$BOOT_CONFIG"
    NEED_REBOOT=1
fi
rm -f "$block" "$new_config"

# --- 7. swap, services, check ----------------------------------------------------------
if [[ $KEEP_SWAP -eq 0 ]]; then
    log "swap off (SD-card wear; the agent fits in RAM)"
    run systemctl disable --now dphys-swapfile.service
fi
log "enable the agent"
run systemctl daemon-reload
run systemctl restart systemd-journald.service
run systemctl enable warmwindow-agent.service
run "$PREFIX/venv/bin/warmwindow" config check /etc/warmwindow/site
if [[ $NEED_REBOOT -eq 1 ]]; then
    log "boot settings changed: reboot now (sudo reboot); the agent starts at boot"
else
    run systemctl restart warmwindow-agent.service
    log "done: systemctl status warmwindow-agent; journalctl -u warmwindow-agent -f"
fi
