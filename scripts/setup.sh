#!/usr/bin/env bash
# Installs everything hpa needs on a fresh Debian 12 machine, from Debian's packages only.
# Safe to re-run: packages already present are not reinstalled. Needs root (or sudo).
set -euo pipefail

packages=(
  cmake g++ make pkg-config          # build
  libgtest-dev googletest            # tests
  libbenchmark-dev                   # benchmarks
  libopenblas-dev                    # CPU GEMM for linear and convolution (see docs/PERFORMANCE.md)
  python3 python3-numpy              # .npy interop tests
  python3-torch python3-torchvision  # PyTorch CPU: golden tests, model parity, side-by-side benchmarks
  libpng-dev libdeflate-dev          # PNG reading and writing (data/png.cpp)
  libtiff-dev libstb-dev             # TIFF (libtiff) and JPEG (stb_image) reading
  python3-pil python3-tifffile       # reader tests against files written by other tools, PIL benchmark
  clang libclang-rt-14-dev libomp-dev  # libFuzzer builds of the readers (scripts/fuzz.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
