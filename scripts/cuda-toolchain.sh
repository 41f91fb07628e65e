#!/usr/bin/env bash
# Makes a CPU-only machine able to build `ogm-gpu` with its `cuda` feature.
#
# What it installs (idempotently, outside the repository, into $OGM_CUDA_HOME, by default
# ${XDG_CACHE_HOME:-$HOME/.cache}/ogm/cuda):
#   wheels/   the pinned CUDA 13.0 compiler wheels from PyPI (nvcc, crt, runtime headers, nvvm),
#             which unpack to a working `nvcc --ptx` and `ptxas`. 13.0 is pinned on purpose: PTX
#             from a newer nvcc carries an ISA version the GPU machine's driver (580 / CUDA 13.0)
#             rejects.
#   libcuda/lib64/libcuda.so
#             the driver library from Debian's non-free `libcuda1` package (downloaded and
#             unpacked with dpkg -x, never installed). `cust` links against it; on a machine
#             without a GPU, cuInit then reports "no CUDA-capable device", which the GPU tests
#             treat as their skip path.
#   env.sh    the variables below, to source.
#
# Usage:
#   scripts/cuda-toolchain.sh            # install if needed, print `export ...` lines on stdout
#   eval "$(scripts/cuda-toolchain.sh)"  # ... and take them into the current shell
#   . "$OGM_CUDA_HOME/env.sh"            # later, without re-running anything
#
# Variables it exports:
#   NVCC               the nvcc executable (read by gpu/build.rs)
#   PTXAS              the ptxas executable (used by scripts/ci-cuda.sh)
#   CUDA_LIBRARY_PATH  a directory holding lib64/libcuda.so (read by cust's build script)
#   LIBRARY_PATH       extended with that lib64 (the linker's search path)
#   OGM_LIBCUDA_DIR    that lib64; put it on LD_LIBRARY_PATH to *run* a test binary on a machine
#                      without a driver. Never on a GPU machine: it would shadow the real driver.
#
# Inputs (all optional):
#   OGM_CUDA_HOME      where to install (see above)
#   OGM_LIBCUDA_DEB    a libcuda1 .deb already at hand (skips apt entirely)
#   PYTHON             the Python used for pip (default python3)
#
# The apt step never touches the system's apt configuration: it derives a private sources file
# from the machine's own Debian entries (same mirrors, with the non-free components added) and
# uses private list and cache directories under $OGM_CUDA_HOME/apt.
set -euo pipefail

NVCC_VERSION=13.0.88
CRT_VERSION=13.0.88
RUNTIME_VERSION=13.0.96
NVVM_VERSION=13.0.88

ROOT="${OGM_CUDA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ogm/cuda}"
PYTHON="${PYTHON:-python3}"
log() { echo "cuda-toolchain: $*" >&2; }
die() {
  echo "cuda-toolchain: error: $*" >&2
  exit 1
}

mkdir -p "$ROOT"

# --- 1. nvcc and ptxas from the pinned wheels -------------------------------------------------
WHEELS="$ROOT/wheels"
STAMP="$WHEELS/.ogm-installed-$NVCC_VERSION-$CRT_VERSION-$RUNTIME_VERSION-$NVVM_VERSION"
CU="$WHEELS/nvidia/cu13"
if [[ ! -f "$STAMP" ]]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for pip); set PYTHON"
  log "installing the CUDA $NVCC_VERSION compiler wheels into $WHEELS"
  rm -rf "$WHEELS"
  # --no-deps: every wheel we need is pinned here; nothing may float to a newer CUDA.
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$WHEELS" \
    "nvidia-cuda-nvcc==$NVCC_VERSION" "nvidia-cuda-crt==$CRT_VERSION" \
    "nvidia-cuda-runtime==$RUNTIME_VERSION" "nvidia-nvvm==$NVVM_VERSION" >&2 ||
    die "pip could not install the nvcc wheels"
  touch "$STAMP"
fi
[[ -x "$CU/bin/nvcc" ]] || die "no nvcc at $CU/bin/nvcc after installing the wheels"
[[ -x "$CU/bin/ptxas" ]] || die "no ptxas at $CU/bin/ptxas after installing the wheels"
# nvcc preprocesses with the host compiler even for --ptx.
command -v g++ >/dev/null || command -v c++ >/dev/null ||
  die "nvcc needs a host C++ compiler (g++) on PATH"

# --- 2. libcuda.so from Debian's non-free libcuda1 --------------------------------------------
LIBDIR="$ROOT/libcuda/lib64"
if [[ ! -e "$LIBDIR/libcuda.so" ]]; then
  deb="${OGM_LIBCUDA_DEB:-}"
  if [[ -z "$deb" ]]; then
    command -v apt-get >/dev/null || die "apt-get not found; set OGM_LIBCUDA_DEB to a libcuda1 .deb"
    APT="$ROOT/apt"
    rm -rf "$APT"
    mkdir -p "$APT/parts" "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/download"
    # Derive the private sources from the machine's own configuration (both formats).
    "$PYTHON" - "$APT/parts/ogm-nonfree.list" <<'PY' || die "could not derive apt sources"
import glob, re, sys

def codename():
    for line in open("/etc/os-release"):
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""

release = codename()
if not release:
    sys.exit("no VERSION_CODENAME in /etc/os-release")
wanted = ["main", "contrib", "non-free", "non-free-firmware"]
entries = []  # (options, uri, suite)

def keep(suite):
    # Only the distribution's own archives (bookworm, bookworm-updates, bookworm-security...).
    return suite == release or suite.startswith(release + "-") or suite.startswith(release + "/")

for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+", line + " ")
        if m and keep(m.group(3)):
            entries.append(((m.group(1) or "").strip(), m.group(2), m.group(3)))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        opts = "[signed-by=%s]" % fields["signed-by"] if "signed-by" in fields else ""
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                if keep(suite):
                    entries.append((opts, uri, suite))
if not entries:
    sys.exit("no apt entry for %s found in /etc/apt" % release)
with open(sys.argv[1], "w") as f:
    for opts, uri, suite in dict.fromkeys(entries):
        f.write(" ".join(x for x in ["deb", opts, uri, suite] + wanted if x) + "\n")
PY
    aptopts=(-o "Dir::Etc::SourceList=$APT/parts/ogm-nonfree.list"
      -o "Dir::Etc::SourceParts=$APT/parts-none"
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
      -o "APT::Sandbox::User=$(id -un)" -o "Debug::NoLocking=1")
    mkdir -p "$APT/parts-none"
    log "apt-get update (private lists under $APT)"
    apt-get "${aptopts[@]}" update >&2 || die "apt-get update failed"
    log "apt-get download libcuda1"
    (cd "$APT/download" && apt-get "${aptopts[@]}" download libcuda1 >&2) ||
      die "apt-get download libcuda1 failed (is the non-free component reachable?)"
    deb="$(ls "$APT"/download/libcuda1_*.deb | head -n1)"
  fi
  [[ -f "$deb" ]] || die "no libcuda1 .deb at '$deb'"
  command -v dpkg >/dev/null || die "dpkg not found (needed to unpack $deb)"
  x="$ROOT/libcuda/extract"
  rm -rf "$x"
  mkdir -p "$x"
  dpkg -x "$deb" "$x"
  so="$(find "$x" -name 'libcuda.so.*' -type f | head -n1)"
  [[ -n "$so" ]] || die "no libcuda.so.* inside $deb"
  mkdir -p "$LIBDIR"
  cp "$so" "$LIBDIR/"
  ln -sf "$(basename "$so")" "$LIBDIR/libcuda.so.1"
  ln -sf libcuda.so.1 "$LIBDIR/libcuda.so"
  rm -rf "$x"
  log "libcuda from $(basename "$deb") in $LIBDIR"
fi

# --- 3. the environment ------------------------------------------------------------------------
cat >"$ROOT/env.sh" <<EOF
# Generated by scripts/cuda-toolchain.sh; source it to build ogm-gpu with --features cuda.
export OGM_CUDA_HOME="$ROOT"
export NVCC="$CU/bin/nvcc"
export PTXAS="$CU/bin/ptxas"
export CUDA_LIBRARY_PATH="$ROOT/libcuda"
export LIBRARY_PATH="$LIBDIR\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export OGM_LIBCUDA_DIR="$LIBDIR"
EOF
log "ready: $("$CU/bin/nvcc" --version | tail -n2 | head -n1)"
cat "$ROOT/env.sh"
