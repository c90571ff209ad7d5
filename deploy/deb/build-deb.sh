#!/usr/bin/env bash
# Build the window agent's Debian package, for Raspberry Pi OS Bookworm 64-bit (arm64)
# and Debian bookworm PCs (amd64):
#
#   deploy/deb/build-deb.sh                      # dist/warmwindow-agent_<version>_{arm64,amd64}.deb
#   deploy/deb/build-deb.sh --arch amd64 --version 0.1.0+test1 --out /tmp/debs
#   deploy/deb/build-deb.sh --arch amd64 --no-wheels --out /tmp/x   # layout only (tests)
#
# <version> is pyproject.toml's unless --version is given. The package holds the agent
# and models packages and the wheels of the agent extra's requirements for the target
# architecture (pip --platform, CPython 3.11, binary wheels only) in /opt/warmwindow/lib;
# see docs/packaging.md. Needs: the repo venv's pip (or PY=python with pip), dpkg-deb,
# readelf, and for Depends dpkg -S on this (Debian) machine. No debhelper, no root.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
PACKAGE=warmwindow-agent
MAINTAINER="WarmWindow maintainers <warmwindow@example.org>"

ARCHES=()
VERSION=""
OUT=""
NO_WHEELS=0
COMPRESS=xz

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --arch A       arm64 or amd64 (repeatable; default both)
  --version V    package version instead of pyproject.toml's (PEP 440 and Debian both)
  --out DIR      where the .deb files go (default dist/; required with --no-wheels)
  --no-wheels    leave the third-party wheels out (a layout check, not installable)
  --compress C   xz (default: 49 MB for arm64, 2.5 min) or zstd (71 MB, 2 s; for tests)
EOF
}

die() {
    echo "build-deb: $*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) ARCHES+=("$2"); shift 2 ;;
        --version) VERSION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-wheels) NO_WHEELS=1; shift ;;
        --compress) COMPRESS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[[ $COMPRESS == xz || $COMPRESS == zstd ]] || die "--compress: xz or zstd, not $COMPRESS"
[[ ${#ARCHES[@]} -gt 0 ]] || ARCHES=(arm64 amd64)
for arch in "${ARCHES[@]}"; do
    [[ $arch == arm64 || $arch == amd64 ]] || die "unknown architecture: $arch"
done
if [[ -z $OUT ]]; then
    [[ $NO_WHEELS -eq 0 ]] || die "--no-wheels builds an incomplete package: give --out"
    OUT=$REPO/dist
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -z $VERSION ]]; then
    VERSION=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$REPO/pyproject.toml")
fi
# A native package's version (no Debian revision) that pip also accepts, e.g. 0.1.0+test1.
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+]*$ ]] || die "bad version: $VERSION"
[[ -x $PY ]] || die "$PY not found (make .venv/bin/.installed, or PY=python3 with pip)"

# A staging area of its own (concurrent builds, the tests' and yours), removed at exit.
mkdir -p "$REPO/build"
WORK=$(mktemp -d "$REPO/build/deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Timestamps from the last commit: the same tree builds the same package.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# pip, quiet; without the warnings about find-links directories a pip.conf names but
# this machine lacks.
pip_q() {
    "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v '^WARNING: Location ' >&2)
}

# --- the agent and models packages (architecture-independent), built once -------------
echo "==> warmwindow $VERSION (agent, models) from $REPO"
changed=$(git -C "$REPO" status --porcelain -- agent models pyproject.toml 2>/dev/null | wc -l)
if [[ $changed -gt 0 ]]; then
    echo "    note: $changed uncommitted change(s) in agent/, models/ or pyproject.toml are packaged"
fi
mkdir -p "$WORK/src"
cp -r "$REPO/agent" "$REPO/models" "$REPO/README.md" "$REPO/pyproject.toml" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
# The version asked for; no server entry point (server/ is not in this package).
python3 - "$WORK/src/pyproject.toml" "$VERSION" <<'EOF'
import re
import sys

path, version = sys.argv[1:3]
text = open(path, encoding="utf-8").read()
text, n = re.subn(r'(?m)^version = ".*"$', f'version = "{version}"', text, count=1)
assert n == 1, "no version line in pyproject.toml"
text, n = re.subn(r'(?m)^server = "server\.cli:register"\n', "", text)
assert n == 1, "no server entry point in pyproject.toml"
open(path, "w", encoding="utf-8").write(text)
EOF
pip_q install --no-deps --no-compile --target "$WORK/app" "$WORK/src"
rm -rf "$WORK/app/bin"

# The agent extra's requirements and the core ones, from pyproject.toml. evdev has no
# wheels: Raspberry Pi OS's and Debian's python3-evdev (a Depends) provides it. numpy
# stays below 2: apt's picamera2/simplejpeg are built against Bookworm's numpy 1.24, and
# our numpy comes first on sys.path, so a numpy 2 would break their C ABI.
python3 - "$REPO/pyproject.toml" >"$WORK/requirements.txt" <<'EOF'
import re
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["agent"]:
    name = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower()
    if name != "evdev":
        print(req)
print("numpy<2")
EOF

# --- per architecture ------------------------------------------------------------------
machine_of() {
    case "$1" in
        arm64) echo aarch64 ;;
        amd64) echo x86_64 ;;
    esac
}

# The Debian package that ships SONAME on this machine (amd64 bookworm: the same names
# as on arm64), else nothing.
package_of() {
    case "$1" in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*) echo libc6 ;;
        *) dpkg -S "*/$1" 2>/dev/null | sed -n '1s/:.*//p' ;;
    esac
}

# depends_of LIB: "libc6 (>= 2.x), pkg, ..." for the ELF files under LIB; fails on a
# library that is neither in LIB nor known to dpkg here.
depends_of() {
    local lib=$1 elves needed provided soname pkg glibc
    elves=$(find "$lib" -type f \( -name '*.so' -o -name '*.so.*' \) | sort)
    [[ -n $elves ]] || return 0
    needed=$(for f in $elves; do readelf -dW "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u)
    provided=$(for f in $elves; do basename "$f"; readelf -dW "$f" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; done | sort -u)
    glibc=$(for f in $elves; do readelf -W --dyn-syms "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*'; done \
        | sed 's/GLIBC_//' | sort -uV | tail -1)
    local pkgs=()
    for soname in $needed; do
        if grep -qxF "$soname" <<<"$provided"; then
            continue # bundled in a wheel (numpy.libs/, opencv_python_headless.libs/, ...)
        fi
        pkg=$(package_of "$soname")
        [[ -n $pkg ]] || die "no Debian package ships $soname (needed under $lib): add it by hand"
        pkgs+=("$pkg")
    done
    printf '%s\n' "${pkgs[@]}" | sort -u | while read -r pkg; do
        if [[ $pkg == libc6 && -n $glibc ]]; then
            echo "libc6 (>= $glibc)"
        else
            echo "$pkg"
        fi
    done | paste -sd, | sed 's/,/, /g'
}

# Licences of the wheels, from their METADATA, for the copyright file.
wheel_licences() {
    python3 - "$1" <<'EOF'
import email.parser
import pathlib
import sys

for meta in sorted(pathlib.Path(sys.argv[1]).glob("*.dist-info/METADATA")):
    msg = email.parser.Parser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
    lic = msg.get("License-Expression") or ""
    if not lic:
        classifiers = [c.split(" :: ")[-1] for c in msg.get_all("Classifier") or [] if c.startswith("License ::")]
        lic = " or ".join(classifiers) or (msg.get("License") or "see its dist-info").splitlines()[0][:60]
    print(f" {msg['Name']} {msg['Version']}: {lic}")
EOF
}

build_one() {
    local arch=$1 machine root lib deb depends size platforms=()
    machine=$(machine_of "$arch")
    root=$WORK/$arch/root
    lib=$root/opt/warmwindow/lib
    echo "==> $PACKAGE $VERSION $arch"
    rm -rf "${WORK:?}/$arch"
    mkdir -p "$lib" "$root/DEBIAN"
    cp -a "$WORK/app/." "$lib/"
    if [[ $NO_WHEELS -eq 0 ]]; then
        # Bookworm has glibc 2.36: every manylinux tag up to it, and the 2014 alias.
        for minor in $(seq 17 36); do
            platforms+=(--platform "manylinux_2_${minor}_${machine}")
        done
        platforms+=(--platform "manylinux2014_${machine}")
        pip_q install --no-compile --target "$lib" --only-binary=:all: \
            --implementation cp --python-version 3.11 "${platforms[@]}" \
            -r "$WORK/requirements.txt"
        rm -rf "${lib:?}/bin" # console scripts with this machine's interpreter in them
    fi
    find "$lib" -name __pycache__ -prune -exec rm -rf {} +

    install -D -m 0755 "$SCRIPT_DIR/warmwindow" "$root/opt/warmwindow/bin/warmwindow"
    mkdir -p "$root/usr/bin"
    ln -s /opt/warmwindow/bin/warmwindow "$root/usr/bin/warmwindow"
    ln -s /opt/warmwindow/bin/warmwindow "$root/usr/bin/warmwindow-agent"
    install -D -m 0644 "$SCRIPT_DIR/agent.env" "$root/etc/warmwindow/agent.env"
    install -d -m 0755 "$root/etc/warmwindow/site"
    mkdir -p "$root/lib/systemd/system"
    python3 "$SCRIPT_DIR/make_unit.py" "$REPO/deploy/systemd/warmwindow-agent.service" \
        "$root/lib/systemd/system/warmwindow-agent.service"

    local doc=$root/usr/share/doc/$PACKAGE man=$root/usr/share/man/man1
    mkdir -p "$doc" "$man"
    local licences
    licences=$(wheel_licences "$lib")
    python3 - "$SCRIPT_DIR/copyright" "$doc/copyright" "$licences" <<'EOF'
import sys

src, dst, licences = sys.argv[1:4]
text = open(src, encoding="utf-8").read().replace("@WHEELS@", licences.rstrip("\n") or " (none)")
open(dst, "w", encoding="utf-8").write(text)
EOF
    changelog "$doc/changelog"
    gzip -9n "$doc/changelog"
    gzip -9n <"$SCRIPT_DIR/warmwindow.1" >"$man/warmwindow.1.gz"
    ln -s warmwindow.1.gz "$man/warmwindow-agent.1.gz"

    # Modes as Debian expects them, whatever the wheels and the checkout had.
    find "$root" -type d -exec chmod 0755 {} +
    find "$root" -type f -exec chmod 0644 {} +
    chmod 0755 "$root/opt/warmwindow/bin/warmwindow"

    for script in postinst prerm postrm; do
        install -m 0755 "$SCRIPT_DIR/$script" "$root/DEBIAN/$script"
    done
    echo /etc/warmwindow/agent.env >"$root/DEBIAN/conffiles"
    chmod 0644 "$root/DEBIAN/conffiles"

    depends="python3 (>= 3.11), python3 (<< 3.12), adduser, python3-evdev"
    local libs
    libs=$(depends_of "$lib")
    [[ -z $libs ]] || depends="$depends, $libs"
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    cat >"$root/DEBIAN/control" <<EOF
Package: $PACKAGE
Version: $VERSION
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends
Recommends: python3-picamera2, python3-lgpio
Section: misc
Priority: optional
Homepage: https://github.com/warmwindow/warmwindow
Description: WarmWindow window terminal agent (smile-service conduct events)
 Runs at a government service centre window: watches whether the clerk stands
 and smiles when a citizen is called and seen off, reads the evaluation panel
 and the away sign, and sends conduct events (never images) over MQTT to the
 centre, keeping every event in a durable outbox until the broker has it.
 .
 The agent, its models and the Python wheels it needs are in /opt/warmwindow;
 the configuration in /etc/warmwindow; the outbox, bundles and settings in
 /var/lib/warmwindow (kept on remove, deleted on purge). The systemd unit
 warmwindow-agent.service starts once /etc/warmwindow/site holds a site.
EOF
    chmod 0644 "$root/DEBIAN/control"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
        | xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/md5sums"
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

    deb=$OUT/${PACKAGE}_${VERSION}_${arch}.deb
    dpkg-deb --root-owner-group "-Z$COMPRESS" --build "$root" "$deb" >/dev/null
    echo "    $deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB)"
    echo "    Depends: $depends"
}

# The changelog: deploy/deb/changelog, with an entry on top for a version it lacks.
changelog() {
    local top
    top=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$SCRIPT_DIR/changelog")
    {
        if [[ $top != "$VERSION" ]]; then
            printf '%s (%s) bookworm; urgency=medium\n\n' "$PACKAGE" "$VERSION"
            printf '  * Build %s of %s (not a release).\n\n' "$VERSION" \
                "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'a checkout')"
            printf ' -- %s  %s\n\n' "$MAINTAINER" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
        fi
        cat "$SCRIPT_DIR/changelog"
    } >"$1"
}

for arch in "${ARCHES[@]}"; do
    build_one "$arch"
done
