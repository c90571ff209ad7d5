#!/usr/bin/env bash
# The window agent on arm64, without a Pi: an emulated Debian bookworm arm64 root
# (qemu-user through binfmt_misc), the agent installed in it from PyPI's aarch64 wheels,
# its tests run there, the smile model compared image by image with x86, and the agent
# run against a broker on this host.  `make pi-check`; not part of `make test`.
#
#   sudo deploy/pi/pi-check.sh [--fresh | --fresh-install] [--steps LIST] [--eval-stride N] [--all-vision]
#                              [--agent-seconds N] [--window w03]
#
# --fresh rebuilds the root and the install layer, --fresh-install only the layer (the
# root stays, for whoever copies it); --steps runs only some of the steps
# (comma-separated names below; the root is always checked and mounted when a later
# step needs it); --eval-stride N compares every Nth held-out image (default 8; 1: all,
# about 25 min emulated); --all-vision runs every tests/vision file (hours emulated).
#
# Steps (each printed with its result and wall time, then a summary table):
#   binfmt   debootstrap, qemu-user-static, binfmt-support installed; binfmt_misc mounted,
#            qemu-aarch64 registered; an aarch64 binary runs
#   root     the arm64 bookworm root in /var/tmp/ww-pi/root (debootstrap, python3,
#            python3-venv, python3-pip, ca-certificates), kept and reused while its
#            .ready stamp names the same recipe; --fresh builds it again
#   install  on an overlay over that root (the root itself is never written after it is
#            built, so others can copy it): python3-evdev from Debian, a venv
#            (--system-site-packages, as deploy/pi/provision.sh makes it) in /opt/ww-venv,
#            `pip install "numpy>=1.26,<2" "/opt/ww-src[agent]" pytest` run by the emulated
#            pip, the code from `git archive HEAD` in /opt/ww-src; pip freeze, uname -m
#   tests    under emulation: tests/rules, tests/agent/test_outbox.py, tests/models and the
#            tests/vision files that run in seconds on x86 (the others: --all-vision)
#   eval     `warmwindow models eval-smile --predictions` on every 8th held-out image of
#            both face sets, here (x86_64, the repo venv) and in the root (aarch64); the
#            same prediction on >= 99.5 % of the images, accuracy within 0.005 of x86's
#   agent    Mosquitto on a free loopback port here, `warmwindow agent --scripted
#            --mock-pins` in the root against it, sessions driven by `cmd` call/finish;
#            what the host received against what the agent's outbox says was acknowledged
#
# Emulated times are not Raspberry Pi times. picamera2 and lgpio come from Raspberry Pi
# OS's own apt repository, which this check cannot reach: the camera path is exercised by
# the replay source (tests/vision) and the GPIO by gpiozero's MockFactory (--mock-pins).
# The step functions are called through `step NAME FUNCTION`, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
HOST_PY="$REPO/.venv/bin/python"

BASE=/var/tmp/ww-pi
ROOT="$BASE/root"           # the arm64 root, shared: written only when (re)built
LAYER="$BASE/check-layer"   # this check's overlay upper/work dirs (venv, source, apt)
MERGED="$BASE/check-root"   # the overlay mount the chroot steps run in
WORK="$BASE/check-run"      # this run's results on the host side
DATA=${WW_DATA:-$(cd "$REPO/.." && pwd)/shared/data}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
RECIPE="debootstrap --arch=arm64 --variant=minbase --include=$INCLUDE $SUITE $MIRROR"
# What the install layer holds; a different line rebuilds it.
LAYER_RECIPE='apt:python3-evdev venv:--system-site-packages pip:numpy>=1.26,<2 .[agent] pytest'
SETS=(smiles-lfw genki4k-train)
EVAL_STRIDE=8
ALL_VISION=0
# tests/vision files run under emulation by default (a few seconds each on x86) and those
# left out (tens of seconds each on x86, ONNX inference over many frames).
VISION_LIGHT=(test_camera.py test_detector.py test_imports.py test_intensity.py
    test_quality.py test_rate.py test_runtime.py test_scenes.py)
VISION_TOO_SLOW=(tests/vision/test_camera.py::test_vision_replay_command)
VISION_HEAVY=(test_clerk.py test_occlusion.py test_placement.py test_posture.py
    test_seat_presence.py test_smile.py)
SITE_DIR=firmware_config/sites/qingpu
WINDOW=w03
AGENT_S=75
FRESH=0
FRESH_LAYER=0
STEPS=binfmt,root,install,tests,eval,agent

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed '$d' | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --fresh) FRESH=1 ;;
        --fresh-install) FRESH_LAYER=1 ;;
        --steps) STEPS=$2; shift ;;
        --eval-stride) EVAL_STRIDE=$2; shift ;;
        --all-vision) ALL_VISION=1 ;;
        --agent-seconds) AGENT_S=$2; shift ;;
        --window) WINDOW=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || { echo "pi-check needs root (mount, chroot): sudo $0" >&2; exit 2; }
[ -x "$HOST_PY" ] || { echo "no repo venv at $REPO/.venv: run make first" >&2; exit 2; }

mkdir -p "$WORK"
rm -f "$WORK"/*.csv "$WORK"/*.txt "$WORK"/*.log "$WORK"/*.tsv "$WORK"/note-*
exec > >(tee "$WORK/pi-check.log") 2>&1
STARTED=$(date +%s)
echo "pi-check $(date -u '+%F %T') UTC on $(uname -m), $(nproc) cores; repo $REPO at $(git -C "$REPO" rev-parse --short HEAD)"

# ---------------------------------------------------------------------- plumbing

MOUNTED=()     # mount points, in mounting order; unmounted in reverse on exit
BG_PIDS=()     # processes started here (broker, subscriber, agent); stopped on exit

cleanup() {
    local i pid
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" || true
    done
    MOUNTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_at() {  # mount_at TARGET MOUNT-ARGS...: mount and remember it
    local target=$1
    shift
    mount "$@" "$target"
    MOUNTED+=("$target")
}

mounts_under() { findmnt -rn -o TARGET | awk -v p="$1" 'index($0, p) == 1'; }

# Remove a directory that must have nothing mounted in it (a bound /dev or data set).
remove_tree() {
    if [ -n "$(mounts_under "$1")" ]; then
        echo "refusing to remove $1: still mounted under it:" >&2
        mounts_under "$1" >&2
        return 1
    fi
    rm -rf --one-file-system "$1"
}

# in_root CMD...: run CMD in the emulated root with a clean environment. PIP_CERT: the
# host's CA bundle, so pip there trusts what this host trusts (any TLS proxy included).
ROOT_ENV=(env -i PATH=/opt/ww-venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_CERT=/opt/ww-check/host-ca.crt WW_DATA=/opt/ww-data)
in_root() { "${ROOT_ENV[@]}" chroot "$MERGED" "$@"; }

# elapsed T0: seconds (one decimal) since T0, a `date +%s%N` reading.
elapsed() {
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

STEP_NO=0
STEP_RC=0
# step NAME FUNCTION: run it in a subshell with errexit, record its result and time in
# STEP_RC and steps.tsv. Always returns 0: called as `step ... || x`, bash would ignore
# errexit inside the function (a condition context reaches into subshells).
step() {
    local name=$1 fn=$2 t0 rc secs result
    STEP_NO=$((STEP_NO + 1))
    echo
    echo "=== [$STEP_NO] $name ($(date -u +%T) UTC)"
    t0=$(date +%s%N)
    set +e
    (set -e; "$fn")
    rc=$?
    set -e
    secs=$(elapsed "$t0")
    if [ $rc = 0 ]; then result=PASS; else result="FAIL(rc=$rc)"; fi
    local note=""
    [ -f "$WORK/note-$name" ] && note=$(cat "$WORK/note-$name")
    printf '%s\t%s\t%s\t%s\n' "$name" "$result" "$secs" "$note" >>"$WORK/steps.tsv"
    echo "=== [$STEP_NO] $name: $result in ${secs} s${note:+ ($note)}"
    STEP_RC=$rc
}
note() { echo "$2" >"$WORK/note-$1"; }

timed() {  # timed LABEL CMD...: run CMD, print its wall time
    local label=$1 t0 rc
    shift
    t0=$(date +%s%N)
    "$@" && rc=0 || rc=$?
    printf -- '--- %s: %s s (rc=%s)\n' "$label" "$(elapsed "$t0")" "$rc"
    return "$rc"
}

logged() {  # logged FILE CMD...: CMD's output into FILE
    local file=$1
    shift
    "$@" >"$file" 2>&1
}

# ---------------------------------------------------------------------- a. binfmt

step_binfmt() {
    local missing="" pkg
    for pkg in debootstrap qemu-user-static binfmt-support; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        apt-get update -qq
        # shellcheck disable=SC2086  # a list of package names
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    fi
    echo "packages: $(dpkg-query -W -f '${Package} ${Version}; ' debootstrap qemu-user-static binfmt-support)"
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        echo "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64
    fi
    # F (fix binary): the kernel holds the interpreter open, so it works inside a chroot.
    sed -n '1,3p' /proc/sys/fs/binfmt_misc/qemu-aarch64
    grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64
    # An aarch64 binary: the root's own, else qemu's --version is all we can show.
    if [ -x "$ROOT/usr/bin/uname" ] && [ -f "$ROOT/.ready" ]; then
        local m
        m=$(chroot "$ROOT" /usr/bin/uname -m)
        echo "chroot $ROOT uname -m: $m"
        [ "$m" = aarch64 ]
        note binfmt "aarch64 binary runs"
    else
        echo "no arm64 root yet: the root step runs its aarch64 binaries (debootstrap's second stage)"
        note binfmt "registered; binary check in root step"
    fi
}

# ---------------------------------------------------------------------- b. root

step_root() {
    if [ "$FRESH" = 1 ] && [ -e "$ROOT" ]; then
        echo "--fresh: removing $ROOT and the check layer"
        remove_tree "$ROOT"
        remove_tree "$LAYER"
    fi
    if [ -f "$ROOT/.ready" ] && [ "$(head -1 "$ROOT/.ready")" = "recipe: $RECIPE" ]; then
        echo "reusing $ROOT:"
        sed 's/^/  /' "$ROOT/.ready"
        note root "reused"
    else
        [ -e "$ROOT" ] && { echo "$ROOT has another recipe or is incomplete: rebuilding"; remove_tree "$ROOT"; }
        local partial="$BASE/root.partial"
        [ -e "$partial" ] && remove_tree "$partial"
        mkdir -p "$BASE"
        echo "$RECIPE"
        timed debootstrap debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" \
            "$SUITE" "$partial" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
            tail -20 "$WORK/debootstrap.log"
            for m in $(mounts_under "$partial" | sort -r); do umount -l "$m"; done
            return 1
        }
        tail -1 "$WORK/debootstrap.log"
        [ -z "$(mounts_under "$partial")" ]
        {
            echo "recipe: $RECIPE"
            echo "built: $(date -u '+%F %T') UTC by deploy/pi/pi-check.sh"
            echo "python: $(chroot "$partial" /usr/bin/python3 --version)"
            echo "size: $(du -sh "$partial" | cut -f1)"
        } >"$partial/.ready"
        mv "$partial" "$ROOT"
        note root "built"
    fi
    echo "uname -m in the root: $(chroot "$ROOT" /usr/bin/uname -m)"
}

# The overlay and the chroot's mounts (in the main shell, so the exit trap undoes them).
mount_root() {
    local m
    for m in $(mounts_under "$MERGED" | sort -r); do
        echo "unmounting $m (left from an interrupted run)"
        umount -l "$m"
    done
    local stamp
    stamp="root=$(md5sum <"$ROOT/.ready" | cut -d' ' -f1) $LAYER_RECIPE"
    if [ "$FRESH_LAYER" = 1 ] && [ -e "$LAYER" ]; then
        echo "--fresh-install: removing the check layer $LAYER"
        remove_tree "$LAYER"
    fi
    if [ -f "$LAYER/stamp" ] && [ "$(cat "$LAYER/stamp")" != "$stamp" ]; then
        echo "the check layer was made for another root or recipe: starting it again"
        remove_tree "$LAYER"
    fi
    mkdir -p "$LAYER/upper" "$LAYER/work" "$MERGED"
    [ -f "$LAYER/stamp" ] || echo "$stamp" >"$LAYER/stamp"
    mount_at "$MERGED" -t overlay overlay \
        -o "lowerdir=$ROOT,upperdir=$LAYER/upper,workdir=$LAYER/work"
    mount_at "$MERGED/proc" -t proc proc
    mount_at "$MERGED/sys" --bind /sys
    mount --make-private "$MERGED/sys"
    # onnxruntime's cpuinfo reads the host's x86 CPUs from /sys (and /proc/cpuinfo, which
    # qemu-user 7.2 passes through) as if they were ARM ones, and the import segfaults
    # under qemu ("uncaught target signal 11"). Hiding the CPU directory makes it fall back
    # ("cpuinfo_initialize failed" warning) as it does without /sys. An emulation artefact:
    # a Pi's /sys describes its own CPU.
    mount_at "$MERGED/sys/devices/system/cpu" -t tmpfs -o ro,size=4k tmpfs
    mount_at "$MERGED/dev" --bind /dev
    mount --make-private "$MERGED/dev"
    mount_at "$MERGED/dev/pts" --bind /dev/pts
    mount --make-private "$MERGED/dev/pts"
    mkdir -p "$MERGED/opt/ww-data"
    mount_at "$MERGED/opt/ww-data" --bind "$DATA"
    mount -o remount,bind,ro "$MERGED/opt/ww-data"
    echo "mounted: ${MOUNTED[*]} (data read-only from $DATA)"
}

# ---------------------------------------------------------------------- c. install

step_install() {
    mkdir -p "$MERGED/opt/ww-check"
    cp /etc/ssl/certs/ca-certificates.crt "$MERGED/opt/ww-check/host-ca.crt"
    cp /etc/resolv.conf "$MERGED/etc/resolv.conf"
    echo "picamera2 and lgpio come from Raspberry Pi OS's own apt repository (archive.raspberrypi.com),"
    echo "which is not reachable here: the camera path is exercised with the replay source, the GPIO"
    echo "with gpiozero's MockFactory (--mock-pins). Everything else comes from PyPI's aarch64 wheels."
    if ! in_root dpkg -s python3-evdev >/dev/null 2>&1; then
        timed "apt python3-evdev (emulated apt)" in_root sh -c \
            'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-evdev >/dev/null'
    fi
    if [ ! -x "$MERGED/opt/ww-venv/bin/python" ]; then
        timed "venv --system-site-packages" in_root python3 -m venv --system-site-packages /opt/ww-venv
        timed "pip upgrade pip" in_root /opt/ww-venv/bin/pip install -q --upgrade pip
    fi
    # The committed tree: what a Pi would get from a checkout (not others' unsaved edits).
    rm -rf "$MERGED/opt/ww-src"
    mkdir -p "$MERGED/opt/ww-src"
    git -C "$REPO" archive HEAD | tar -x -C "$MERGED/opt/ww-src"
    echo "source: git archive $(git -C "$REPO" rev-parse --short HEAD) -> /opt/ww-src"
    timed "pip install numpy<2 .[agent] pytest (emulated pip)" logged "$WORK/pip-install.log" \
        in_root /opt/ww-venv/bin/pip install --progress-bar off "numpy>=1.26,<2" \
        "/opt/ww-src[agent]" pytest || {
        tail -30 "$WORK/pip-install.log"
        return 1
    }
    grep -E '^(Successfully installed|Requirement already satisfied: (numpy|onnxruntime))' \
        "$WORK/pip-install.log" | cut -c1-300 || true
    in_root /opt/ww-venv/bin/pip freeze --all >"$WORK/pip-freeze-aarch64.txt"
    echo "pip freeze (aarch64 root, $WORK/pip-freeze-aarch64.txt):"
    sed 's/^/  /' "$WORK/pip-freeze-aarch64.txt"
    local um pm
    um=$(in_root uname -m)
    pm=$(in_root /opt/ww-venv/bin/python -c 'import platform; print(platform.machine())')
    echo "uname -m: $um; platform.machine(): $pm"
    [ "$um" = aarch64 ] && [ "$pm" = aarch64 ]
    in_root /opt/ww-venv/bin/python - <<'EOF'
from importlib.metadata import version

import cryptography, cv2, evdev, gpiozero, numpy, onnxruntime, paho.mqtt, pydantic
from gpiozero.pins.mock import MockFactory

print("imports ok: onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers(),
      "numpy", numpy.__version__, "cv2", cv2.__version__, "gpiozero", version("gpiozero"),
      "pydantic", pydantic.__version__, "cryptography", cryptography.__version__)
for mod in ("picamera2", "lgpio"):
    try:
        __import__(mod)
        print(mod, "importable")
    except ImportError as exc:
        print(f"{mod}: not installed here ({exc.name}): Raspberry Pi OS apt only")
EOF
    note install "$(grep -c . "$WORK/pip-freeze-aarch64.txt") packages, $pm"
}

# ---------------------------------------------------------------------- d. tests

step_tests() {
    local subset paths line total_p=0 total_f=0 rc=0 vision f
    if [ "$ALL_VISION" = 1 ]; then
        vision="tests/vision"
    else
        echo "vision: deselected ${VISION_TOO_SLOW[*]}: it gives the replay CLI 60 s, which"
        echo "  under emulation is not enough (killed at 60 s in the first full run here)"
        vision=""
        for f in "${VISION_LIGHT[@]}"; do vision="$vision tests/vision/$f"; done
        for f in "${VISION_TOO_SLOW[@]}"; do vision="$vision --deselect $f"; done
        echo "vision: running the files that replay, detect, check quality and import"
        echo "  (${VISION_LIGHT[*]});"
        echo "  not run under emulation (ONNX inference over many frames is ~100x slower under"
        echo "  qemu's software floating point; the eval step checks the model's readings instead):"
        echo "  ${VISION_HEAVY[*]} (--all-vision runs them: hours here)"
    fi
    for subset in "rules:tests/rules" "outbox:tests/agent/test_outbox.py" \
        "vision:$vision" "models:tests/models"; do
        paths=${subset#*:}
        echo "--- pytest $paths (aarch64, emulated)"
        local t0 secs p f e
        t0=$(date +%s%N)
        in_root sh -c "cd /opt/ww-src && timeout 3600 /opt/ww-venv/bin/python -m pytest \
            -p no:cacheprovider -q --durations=5 $paths" >"$WORK/pytest-${subset%%:*}.log" 2>&1 || rc=1
        secs=$(elapsed "$t0")
        line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$WORK/pytest-${subset%%:*}.log" | tail -1 || true)
        grep -E '^(FAILED|ERROR) |^[0-9.]+s (call|setup) ' "$WORK/pytest-${subset%%:*}.log" || true
        p=$(echo "$line" | grep -oE '[0-9]+ passed' | cut -d' ' -f1 || true)
        f=$(echo "$line" | grep -oE '[0-9]+ failed' | cut -d' ' -f1 || true)
        e=$(echo "$line" | grep -oE '[0-9]+ errors?' | cut -d' ' -f1 || true)
        echo "    ${subset%%:*}: passed=${p:-0} failed=${f:-0} errors=${e:-0} wall=${secs}s  [$line]"
        total_p=$((total_p + ${p:-0}))
        total_f=$((total_f + ${f:-0} + ${e:-0}))
        echo "${subset%%:*}	${p:-0}	$((${f:-0} + ${e:-0}))	$secs" >>"$WORK/tests.tsv"
    done
    note tests "$total_p passed, $total_f failed/errors"
    return "$rc"
}

# ---------------------------------------------------------------------- e. eval

step_eval() {
    local set
    rm -rf "$MERGED/tmp/ww-eval"
    mkdir -p "$MERGED/tmp/ww-eval/data"
    # The held-out split of each set (models/datasets.py), every EVAL_STRIDE-th image in its
    # sorted order, copied so that both machines read the same files from one folder.
    (cd "$MERGED/opt/ww-src" && PYTHONDONTWRITEBYTECODE=1 "$HOST_PY" - "$DATA" \
        "$MERGED/tmp/ww-eval/data" "$EVAL_STRIDE" "${SETS[@]}") <<'EOF'
import shutil, sys
from pathlib import Path

from models import datasets

data, out, stride, sets = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
for name in sets:
    held = datasets.split(name, data)[1]
    picked = held[::stride]
    for s in picked:
        dst = out / name / s.path.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s.path, dst / s.path.name)
    print(f"{name}: {len(picked)} of its {len(held)} held-out images (every {stride}th)")
EOF
    for set in "${SETS[@]}"; do
        echo "--- $set, x86_64 (repo venv, same source: $(cd "$MERGED/opt/ww-src" &&
            "$HOST_PY" -c 'import models.evaluate as m; print(m.__file__)'))"
        (cd "$MERGED/opt/ww-src" && PYTHONDONTWRITEBYTECODE=1 timed "eval x86_64 $set" \
            "$HOST_PY" -m agent.cli models eval-smile --data "$MERGED/tmp/ww-eval/data/$set" \
            --predictions "$WORK/eval-x86_64-$set.csv") | tee "$WORK/eval-x86_64-$set.txt"
        echo "--- $set, aarch64 (emulated)"
        timed "eval aarch64 $set" in_root sh -c "cd /tmp && /opt/ww-venv/bin/warmwindow models eval-smile \
            --data /tmp/ww-eval/data/$set --predictions /tmp/ww-eval/aarch64-$set.csv 2>&1 \
            | grep -v cpuinfo" | tee "$WORK/eval-aarch64-$set.txt"
        cp "$MERGED/tmp/ww-eval/aarch64-$set.csv" "$WORK/eval-aarch64-$set.csv"
    done
    "$HOST_PY" - "$WORK" "${SETS[@]}" <<'EOF'
import csv, sys
from pathlib import Path

work, sets = Path(sys.argv[1]), sys.argv[2:]
def rows(p):
    with p.open(newline="", encoding="utf-8") as f:
        return {r["image"]: r for r in csv.DictReader(f)}
ok, tot = True, {"n": 0, "agree": 0, "x86": 0, "arm": 0}
print(f"{'set':15} {'n':>5} {'acc x86_64':>10} {'acc aarch64':>11} {'|d acc|':>8} {'same pred':>9} {'max |d p|':>9}")
for s in sets:
    a, b = rows(work / f"eval-x86_64-{s}.csv"), rows(work / f"eval-aarch64-{s}.csv")
    if a.keys() != b.keys():
        print(f"{s}: the two runs read different images ({len(a)} vs {len(b)})"); ok = False; continue
    n = len(a)
    agree = sum(a[k]["predicted"] == b[k]["predicted"] for k in a)
    acc_a = sum(r["predicted"] == r["label"] for r in a.values())
    acc_b = sum(r["predicted"] == r["label"] for r in b.values())
    dp = max(abs(float(a[k]["p_smile"]) - float(b[k]["p_smile"])) for k in a)
    d = abs(acc_a - acc_b) / n
    print(f"{s:15} {n:5} {acc_a / n:10.4f} {acc_b / n:11.4f} {d:8.4f} {agree / n:9.4f} {dp:9.6f}")
    for k in a:
        if a[k]["predicted"] != b[k]["predicted"]:
            print(f"  differs: {k} x86 p={a[k]['p_smile']} aarch64 p={b[k]['p_smile']}")
    ok &= agree / n >= 0.995 and d <= 0.005
    for key, v in (("n", n), ("agree", agree), ("x86", acc_a), ("arm", acc_b)):
        tot[key] += v
n = tot["n"]
if n:
    print(f"{'both':15} {n:5} {tot['x86'] / n:10.4f} {tot['arm'] / n:11.4f} "
          f"{abs(tot['x86'] - tot['arm']) / n:8.4f} {tot['agree'] / n:9.4f}")
    ok &= tot["agree"] / n >= 0.995 and abs(tot["x86"] - tot["arm"]) / n <= 0.005
    (work / "note-eval").write_text(
        f"n={n} agree={tot['agree'] / n:.4f} acc x86={tot['x86'] / n:.4f} aarch64={tot['arm'] / n:.4f}\n")
print("criteria (same prediction >= 0.995, |d accuracy| <= 0.005):", "met" if ok else "NOT met")
sys.exit(0 if ok and n else 1)
EOF
}

# ---------------------------------------------------------------------- f. agent

free_port() { "$HOST_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

command_json() {  # command_json ACTION [TICKET]
    local id
    id=$(cat /proc/sys/kernel/random/uuid)
    if [ -n "${2:-}" ]; then
        printf '{"cmd_id":"%s","action":"%s","ticket":"%s"}' "$id" "$1" "$2"
    else
        printf '{"cmd_id":"%s","action":"%s"}' "$id" "$1"
    fi
}

step_agent() {
    local mosq port site topic t0 i agent_pid rc
    # A step runs in a subshell, which the main exit trap does not cover.
    trap 'for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT
    mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    [ -x "$mosq" ] || { echo "mosquitto is not installed here (apt install mosquitto mosquitto-clients)"; return 1; }
    port=$(free_port)
    site=$(sed -n 's/^site = "\(.*\)"/\1/p' "$REPO/$SITE_DIR/site.toml")
    topic="ww/v1/$site/$WINDOW"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$WORK/mosquitto.conf"
    "$mosq" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    BG_PIDS+=($!)
    for i in $(seq 50); do mosquitto_pub -h 127.0.0.1 -p "$port" -t ww/ping -n 2>/dev/null && break; sleep 0.1; done
    echo "broker: $mosq on 127.0.0.1:$port (pid ${BG_PIDS[-1]})"
    mosquitto_sub -h 127.0.0.1 -p "$port" -q 1 -t 'ww/v1/#' -v >"$WORK/subscription.txt" 2>&1 &
    BG_PIDS+=($!)
    rm -rf "$MERGED/tmp/ww-state"
    echo "agent: warmwindow agent --site /opt/ww-src/$SITE_DIR --window $WINDOW --state-dir /tmp/ww-state" \
        "--mock-pins --scripted --broker 127.0.0.1:$port (aarch64, emulated), ${AGENT_S} s"
    t0=$(date +%s)
    # A simple command, so $! is the agent itself (env and chroot exec it).
    "${ROOT_ENV[@]}" chroot "$MERGED" /opt/ww-venv/bin/warmwindow agent --site "/opt/ww-src/$SITE_DIR" --window "$WINDOW" \
        --state-dir /tmp/ww-state --mock-pins --scripted --broker "127.0.0.1:$port" \
        >"$WORK/agent.log" 2>&1 &
    agent_pid=$!
    BG_PIDS+=("$agent_pid")
    for i in $(seq 120); do
        grep -q "^$topic/availability online" "$WORK/subscription.txt" && break
        kill -0 "$agent_pid" 2>/dev/null || { echo "the agent exited early:"; tail -30 "$WORK/agent.log"; return 1; }
        sleep 0.5
    done
    grep -q "^$topic/availability online" "$WORK/subscription.txt" || { echo "no availability online"; tail -30 "$WORK/agent.log"; return 1; }
    echo "online after $(($(date +%s) - t0)) s (start-up under emulation)"
    # Sessions: a queue call, the clerk (scripted) stands and greets, then finish.
    local n=0
    while [ $(($(date +%s) - t0 + 24)) -le "$AGENT_S" ]; do
        n=$((n + 1))
        mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "$topic/cmd" -m "$(command_json call "A$(printf %03d "$n")")"
        sleep 14
        mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "$topic/cmd" -m "$(command_json finish)"
        sleep 10
    done
    sleep $((AGENT_S - ($(date +%s) - t0) > 0 ? AGENT_S - ($(date +%s) - t0) : 0))
    echo "$n sessions driven (cmd call, 14 s, cmd finish, 10 s); SIGTERM after $(($(date +%s) - t0)) s"
    kill -TERM "$agent_pid"
    rc=0
    timeout 60 tail --pid="$agent_pid" -f /dev/null || { echo "the agent did not stop in 60 s"; rc=1; }
    local status=0
    wait "$agent_pid" || status=$?
    echo "agent exit status $status (after SIGTERM)"
    [ "$status" = 0 ] || rc=1
    sleep 1
    echo "agent log (last lines):"
    tail -8 "$WORK/agent.log" | cut -c1-200 | sed 's/^/  /'
    local db="$MERGED/tmp/ww-state/$site-$WINDOW.outbox.db"
    "$HOST_PY" - "$WORK/subscription.txt" "$db" "$topic" <<'EOF' || rc=1
import json, sqlite3, sys
from collections import Counter

sub, db, topic = sys.argv[1:]
events, other = {}, Counter()
for line in open(sub, encoding="utf-8"):
    t, _, payload = line.rstrip("\n").partition(" ")
    if t == f"{topic}/event":
        ev = json.loads(payload)
        events[ev["event_id"]] = ev
    elif t.startswith(topic + "/"):
        other[t.rsplit("/", 1)[1]] += 1
kinds = Counter(ev["kind"] for ev in events.values())
print("received on the host (ww/v1/#):", dict(other), "| events by kind:", dict(sorted(kinds.items())))
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
meta = dict(con.execute("SELECT key, value FROM meta"))
left = {s for (s,) in con.execute("SELECT seq FROM outbox")}
acked = meta["last_seq"] - len(left) - meta["dropped"]
seqs = sorted(ev["seq"] for ev in events.values())
print(f"outbox: {meta['last_seq']} events made, {len(left)} still queued, {meta['dropped']} dropped,"
      f" so {acked} acknowledged; host received {len(events)} distinct events (seqs {seqs})")
expected = set(range(1, meta["last_seq"] + 1)) - left
ok = len(events) == acked and set(seqs) == expected and len(events) > 0
print("received == acknowledged:", "yes" if ok else "NO")
open(sys.argv[1].rsplit("/", 1)[0] + "/note-agent", "w").write(
    f"{len(events)} events received = {acked} acked; " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + "\n")
sys.exit(0 if ok else 1)
EOF
    return "$rc"
}

# ---------------------------------------------------------------------- run

wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

overall=0
if wanted binfmt; then
    step binfmt step_binfmt
    overall=$STEP_RC
fi
if [ "$overall" = 0 ]; then
    step root step_root
    overall=$STEP_RC
fi
if [ "$overall" = 0 ]; then
    mount_root
    if wanted install; then
        step install step_install
        overall=$STEP_RC
    fi
fi
if [ "$overall" = 0 ]; then
    # The later steps are independent of each other: each runs even if one before failed.
    for name in tests eval agent; do
        if wanted $name; then
            step $name "step_$name"
            [ "$STEP_RC" = 0 ] || overall=1
        fi
    done
fi
cleanup

echo
echo "=== summary (emulated aarch64 under qemu-user on $(nproc) x86_64 cores: these are NOT Raspberry Pi times)"
printf '%-8s %-12s %9s  %s\n' step result "wall s" note
while IFS=$'\t' read -r name result secs note; do
    printf '%-8s %-12s %9s  %s\n' "$name" "$result" "$secs" "$note"
done <"$WORK/steps.tsv"
if [ -f "$WORK/tests.tsv" ]; then
    echo "tests by subset (passed, failed+errors, wall s):"
    sed 's/\t/  /g; s/^/  /' "$WORK/tests.tsv"
fi
echo "total $(($(date +%s) - STARTED)) s; log and artefacts in $WORK; root $ROOT (kept)"
echo "not proved here: the real camera (picamera2/libcamera), lgpio on the Pi's GPIO, Pi timing"
[ $overall = 0 ] && echo "pi-check: PASS" || echo "pi-check: FAIL"
exit $overall
