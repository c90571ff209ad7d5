#!/usr/bin/env bash
# Install, configure, run, upgrade, remove and purge warmwindow-agent in a Debian root:
#
#   sudo deploy/deb/test-install.sh /var/tmp/ww-deb/amd64       # a debootstrap'd bookworm
#   sudo deploy/deb/test-install.sh /var/tmp/ww-deb/arm64       # arm64 under qemu-user
#
# Version A is dist/warmwindow-agent_<version>_<arch>.deb (built when missing); version B
# is built here with --version <version>+upgradetest1. The root's architecture is its
# dpkg's. Every check prints PASS or FAIL; the script exits 1 on any FAIL. It mounts
# /proc (and /sys in a native root) and binds /dev in ROOT while it runs, and apt-get installs the package's
# Depends there (the root needs a Debian mirror). Nothing is installed on this machine.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
SITE_SRC=$REPO/firmware_config/sites/qingpu
WINDOW=w01
PKG=warmwindow-agent

[[ $# -eq 1 && -d $1 ]] || {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}
[[ $EUID -eq 0 ]] || { echo "test-install: run as root (chroot)" >&2; exit 2; }
ROOT=$(realpath "$1")
[[ $ROOT != / ]] || { echo "test-install: never on this machine's own root" >&2; exit 2; }
[[ -x $ROOT/usr/bin/python3 ]] || { echo "test-install: $ROOT has no python3" >&2; exit 2; }

PASSED=0
FAILED=0
T0=$(date +%s)

log() {
    echo "[$(($(date +%s) - T0))s] == $*"
}

check() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "PASS  $name"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL  $name"
        FAILED=$((FAILED + 1))
    fi
}

# in_root CMD...: run in the root as root, with a clean environment.
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# as_agent CMD...: the same as the user warmwindow (so the outbox's WAL files stay its own).
as_agent() {
    local ids
    ids=$(chroot "$ROOT" id -u warmwindow):$(chroot "$ROOT" id -g warmwindow) || return 1
    chroot --userspec="$ids" "$ROOT" /usr/bin/env -i \
        PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/var/lib/warmwindow "$@"
}

MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTED[$i]}" 2>/dev/null || true
    done
    rm -rf "$ROOT/tmp/ww-test"
}
trap cleanup EXIT

ARCH=$(chroot "$ROOT" dpkg --print-architecture) || { echo "test-install: no dpkg in $ROOT" >&2; exit 2; }
if [[ $ARCH != "$(dpkg --print-architecture)" ]]; then
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] \
        || { echo "test-install: binfmt_misc has no qemu-aarch64 for an $ARCH root" >&2; exit 2; }
fi
VERSION_A=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$REPO/pyproject.toml")
VERSION_B=$VERSION_A+upgradetest1
DEB_A=$REPO/dist/${PKG}_${VERSION_A}_${ARCH}.deb
DEB_DIR=$REPO/build/deb/test-$ARCH
DEB_B=$DEB_DIR/${PKG}_${VERSION_B}_${ARCH}.deb
log "root $ROOT ($ARCH), A=$VERSION_A B=$VERSION_B"

if [[ ! -f $DEB_A ]]; then
    log "build A: $DEB_A"
    "$SCRIPT_DIR/build-deb.sh" --arch "$ARCH" 2>&1 | grep -v '^WARNING: Location' || exit 2
fi
log "build B: $DEB_B"
"$SCRIPT_DIR/build-deb.sh" --arch "$ARCH" --version "$VERSION_B" --compress zstd --out "$DEB_DIR" \
    2>&1 | grep -v '^WARNING: Location'
[[ -f $DEB_B ]] || { echo "test-install: $DEB_B not built" >&2; exit 2; }

mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc"); }
mountpoint -q "$ROOT/dev" || { mount --bind /dev "$ROOT/dev" && MOUNTED+=("$ROOT/dev"); }
# onnxruntime reads the CPU list from /sys (without it, it warns and runs). Not under
# qemu: there /sys describes this machine's x86 CPUs, and importing onnxruntime in the
# arm64 root then dies of SIGSEGV (measured); a Pi's /sys is its own.
if [[ $ARCH == "$(dpkg --print-architecture)" ]]; then
    mountpoint -q "$ROOT/sys" || { mount -t sysfs sysfs "$ROOT/sys" && MOUNTED+=("$ROOT/sys"); }
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$ROOT/tmp/ww-test"
cp "$DEB_A" "$DEB_B" "$SCRIPT_DIR/fill_outbox.py" "$ROOT/tmp/ww-test/"

if in_root dpkg-query -W "$PKG" >/dev/null 2>&1; then
    log "left over from an earlier run: purging $PKG first"
    in_root dpkg -P "$PKG"
fi
# A free port with nothing listening: the agent's events must stay in its outbox.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OUTBOX=/var/lib/warmwindow/qingpu-$WINDOW.outbox.db

status_of() {
    # shellcheck disable=SC2016 # dpkg-query expands these
    in_root dpkg-query -W -f '${db:Status-Abbrev}${Version}' "$PKG" 2>/dev/null
}
rows() {
    as_agent /usr/bin/python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select count(*) from outbox").fetchone()[0])' "$OUTBOX" \
        2>/dev/null
}

# run_agent SECONDS LOG: the installed command as systemd runs it (plus mock pins, the
# scripted clerk and a dead broker) until it reports running, SECONDS more, then SIGTERM.
run_agent() {
    local seconds=$1 out=$2 pid waited=0 ids
    ids=$(chroot "$ROOT" id -u warmwindow):$(chroot "$ROOT" id -g warmwindow)
    # Not through a function: $! must be the process that becomes the agent (chroot and
    # env exec), so that SIGTERM reaches it as systemd's stop would.
    chroot --userspec="$ids" "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
        HOME=/var/lib/warmwindow /usr/bin/warmwindow agent --site /etc/warmwindow/site \
        --window "$WINDOW" --state-dir /var/lib/warmwindow --mock-pins --scripted \
        --broker "127.0.0.1:$PORT" >"$out" 2>&1 &
    pid=$!
    while ! grep -q "agent qingpu/$WINDOW running" "$out" && kill -0 "$pid" 2>/dev/null && ((waited < 300)); do
        sleep 1
        waited=$((waited + 1))
    done
    sleep "$seconds"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    local rc=$?
    grep -c "connect to 127.0.0.1:$PORT failed" "$out" | sed "s/^/    broker connection attempts refused: /"
    grep -E "ERROR|Traceback" "$out" | head -5
    return "$rc"
}

# --- install A -------------------------------------------------------------------------
if ! ls "$ROOT"/var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    log "apt-get update in the root"
    in_root apt-get update -qq
fi
log "install A: dpkg -i, then apt-get -f install for the Depends"
in_root dpkg -i "/tmp/ww-test/$(basename "$DEB_A")" >"$ROOT/tmp/ww-test/install-a.log" 2>&1
in_root apt-get -f install -y -q >>"$ROOT/tmp/ww-test/install-a.log" 2>&1
grep -E '^warmwindow-agent:|dependency problems|depends on' "$ROOT/tmp/ww-test/install-a.log" | sed 's/^/    /'
check "A installed ($VERSION_A)" test "$(status_of)" = "ii $VERSION_A"
check "user warmwindow is a system user" sh -c "test \$(chroot '$ROOT' id -u warmwindow) -lt 1000"
UID_A=$(chroot "$ROOT" id -u warmwindow 2>/dev/null)
for group in video input gpio; do
    if chroot "$ROOT" getent group "$group" >/dev/null; then
        check "warmwindow in group $group" sh -c "chroot '$ROOT' id -nG warmwindow | grep -qw $group"
    else
        echo "      (no group $group in this root)"
    fi
done
check "/var/lib/warmwindow warmwindow:warmwindow 0750" \
    test "$(chroot "$ROOT" stat -c '%U:%G %a' /var/lib/warmwindow)" = "warmwindow:warmwindow 750"
check "bundles/ and settings/ created" test -d "$ROOT/var/lib/warmwindow/bundles" -a -d "$ROOT/var/lib/warmwindow/settings"
check "state not in the package's file list" sh -c "! chroot '$ROOT' dpkg -L $PKG | grep -q /var/lib/warmwindow"
check "agent.env is a conffile" sh -c "chroot '$ROOT' dpkg-query -W -f '\${Conffiles}' $PKG | grep -q /etc/warmwindow/agent.env"
check "unit installed" test -f "$ROOT/lib/systemd/system/warmwindow-agent.service"
check "unit enabled (multi-user.target.wants)" test -L "$ROOT/etc/systemd/system/multi-user.target.wants/warmwindow-agent.service"
check "postinst: not started without systemd" grep -q "systemd is not running here" "$ROOT/tmp/ww-test/install-a.log"
check "bytecode compiled by postinst" test -d "$ROOT/opt/warmwindow/lib/agent/__pycache__"
check "warmwindow --help" in_root /usr/bin/warmwindow --help
check "warmwindow-agent --help" in_root /usr/bin/warmwindow-agent --help
log "the wheels on $ARCH: numpy, OpenCV, onnxruntime on the packaged face detector"
in_root /usr/bin/python3 -I -c '
import sys
sys.path.insert(0, "/opt/warmwindow/lib")
import cv2, numpy, onnxruntime, pydantic, paho.mqtt, gpiozero, cryptography, evdev
from importlib.resources import files
model = files("models") / "face_detector.onnx"
s = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in i.shape]
dtype = {"tensor(uint8)": numpy.uint8, "tensor(float)": numpy.float32}[i.type]
out = s.run(None, {i.name: numpy.zeros(shape, dtype)})
print(f"    numpy {numpy.__version__} ({numpy.__file__}), cv2 {cv2.__version__}, "
      f"onnxruntime {onnxruntime.__version__}: {i.name}{shape} {i.type} -> {[o.shape for o in out]}; "
      f"evdev from {evdev.__file__}")
' >"$ROOT/tmp/ww-test/wheels.log" 2>&1
WHEELS_RC=$?
cat "$ROOT/tmp/ww-test/wheels.log"
check "wheels import and run a model" test "$WHEELS_RC" -eq 0
check "numpy below 2 (apt's picamera2 ABI)" grep -q "numpy 1\." "$ROOT/tmp/ww-test/wheels.log"

# --- configure a window, put events in the outbox --------------------------------------
log "configure qingpu/$WINDOW, fill the outbox (no broker on 127.0.0.1:$PORT)"
mkdir -p "$ROOT/etc/warmwindow/site/windows"
cp "$SITE_SRC/site.toml" "$ROOT/etc/warmwindow/site/"
cp "$SITE_SRC/windows/$WINDOW.toml" "$ROOT/etc/warmwindow/site/windows/"
sed -i "s/^WW_WINDOW=.*/WW_WINDOW=$WINDOW/" "$ROOT/etc/warmwindow/agent.env"
check "warmwindow config check /etc/warmwindow/site" in_root /usr/bin/warmwindow config check /etc/warmwindow/site
as_agent /usr/bin/python3 -I /tmp/ww-test/fill_outbox.py --site /etc/warmwindow/site --window "$WINDOW" \
    --state-dir /var/lib/warmwindow --broker "127.0.0.1:$PORT" --seconds 20 2>&1 | grep '^fill_outbox' | sed 's/^/    /'
FILLED=$(rows)
echo "    outbox rows after the simulated window: ${FILLED:-none}"
check "events in the outbox ($OUTBOX)" test "${FILLED:-0}" -gt 0
log "warmwindow agent (A) as warmwindow, --mock-pins --scripted, dead broker"
run_agent 5 "$ROOT/tmp/ww-test/agent-a.log"
check "agent A ran and stopped cleanly on SIGTERM" test $? -eq 0
ROWS_A=$(rows)
echo "    outbox rows after agent A: ${ROWS_A:-none}"
check "agent A kept every unsent event" test "${ROWS_A:-0}" -ge "${FILLED:-1}"

echo "# local edit by test-install.sh: keep me" >>"$ROOT/etc/warmwindow/agent.env"

# --- upgrade to B ----------------------------------------------------------------------
log "upgrade: dpkg -i B"
in_root dpkg -i "/tmp/ww-test/$(basename "$DEB_B")" >"$ROOT/tmp/ww-test/install-b.log" 2>&1
UPGRADE_RC=$?
sed 's/^/    /' "$ROOT/tmp/ww-test/install-b.log" | grep -E 'warmwindow-agent:|Unpacking|Setting up|error'
check "B installed ($VERSION_B)" test "$UPGRADE_RC" -eq 0 -a "$(status_of)" = "ii $VERSION_B"
check "agent.env local edit kept" grep -q "local edit by test-install.sh" "$ROOT/etc/warmwindow/agent.env"
check "agent.env WW_WINDOW kept" grep -qx "WW_WINDOW=$WINDOW" "$ROOT/etc/warmwindow/agent.env"
check "no agent.env.dpkg-* left" sh -c "! ls '$ROOT'/etc/warmwindow/agent.env.dpkg-* 2>/dev/null"
check "site files kept" test -f "$ROOT/etc/warmwindow/site/site.toml" -a -f "$ROOT/etc/warmwindow/site/windows/$WINDOW.toml"
ROWS_B=$(rows)
echo "    outbox rows after the upgrade: ${ROWS_B:-none}"
check "outbox rows unchanged by the upgrade ($ROWS_A)" test "${ROWS_B:-x}" = "${ROWS_A:-y}"
check "/var/lib/warmwindow kept, warmwindow:warmwindow" \
    test "$(chroot "$ROOT" stat -c '%U:%G %a' /var/lib/warmwindow)" = "warmwindow:warmwindow 750"
check "user warmwindow kept (uid $UID_A)" test "$(chroot "$ROOT" id -u warmwindow 2>/dev/null)" = "$UID_A"
check "B's files in place" in_root sh -c "python3 -I -c 'import sys; sys.path.insert(0, \"/opt/warmwindow/lib\"); from importlib.metadata import version; assert version(\"warmwindow\") == \"$VERSION_B\"'"
check "warmwindow --help (B)" in_root /usr/bin/warmwindow --help
log "warmwindow agent (B) on A's outbox"
run_agent 3 "$ROOT/tmp/ww-test/agent-b.log"
check "agent B ran and stopped cleanly on SIGTERM" test $? -eq 0
ROWS_B2=$(rows)
echo "    outbox rows after agent B: ${ROWS_B2:-none}"
check "agent B kept every unsent event" test "${ROWS_B2:-0}" -ge "${ROWS_A:-1}"

# --- remove ----------------------------------------------------------------------------
log "dpkg -r"
in_root dpkg -r "$PKG" 2>&1 | grep -E 'warmwindow-agent:|warning' | sed 's/^/    /'
check "removed, config-files remain" test "$(status_of)" = "rc $VERSION_B"
check "/opt/warmwindow gone" test ! -e "$ROOT/opt/warmwindow"
check "/usr/bin/warmwindow gone" test ! -e "$ROOT/usr/bin/warmwindow" -a ! -L "$ROOT/usr/bin/warmwindow"
check "unit file gone" test ! -e "$ROOT/lib/systemd/system/warmwindow-agent.service"
check "agent.env kept with the local edit" grep -q "local edit by test-install.sh" "$ROOT/etc/warmwindow/agent.env"
check "site config kept" test -f "$ROOT/etc/warmwindow/site/site.toml"
ROWS_R=$(rows)
check "outbox kept ($ROWS_R rows)" test "${ROWS_R:-x}" = "${ROWS_B2:-y}"
check "user warmwindow kept" chroot "$ROOT" id warmwindow

# --- purge -----------------------------------------------------------------------------
log "dpkg -P"
in_root dpkg -P "$PKG" 2>&1 | grep -E 'warmwindow-agent:|warning' | sed 's/^/    /'
check "purged (dpkg knows no $PKG)" sh -c "! chroot '$ROOT' dpkg-query -W -f '\${db:Status-Abbrev}' $PKG 2>/dev/null | grep -q '[a-z]'"
check "/opt/warmwindow gone" test ! -e "$ROOT/opt/warmwindow"
check "/etc/warmwindow gone" test ! -e "$ROOT/etc/warmwindow"
check "/var/lib/warmwindow gone" test ! -e "$ROOT/var/lib/warmwindow"
check "user warmwindow gone" sh -c "! chroot '$ROOT' getent passwd warmwindow"
check "group warmwindow gone" sh -c "! chroot '$ROOT' getent group warmwindow"
check "no unit symlinks left" sh -c "! find '$ROOT/etc/systemd/system' -name 'warmwindow-agent*' | grep -q ."

log "done"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
