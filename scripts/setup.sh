#!/usr/bin/env bash
# Installs everything hpa needs on a fresh Debian 12 machine: Debian's packages, and one
# PyPI package (timm, pinned; below) that Debian does not have.
# Safe to re-run: packages already present are not reinstalled. Needs root (or sudo).
set -euo pipefail

packages=(
  cmake g++ make pkg-config          # build
  libgtest-dev googletest            # tests
  libbenchmark-dev                   # benchmarks
  libopenblas-dev                    # CPU GEMM for linear and convolution (see docs/PERFORMANCE.md)
  python3 python3-numpy              # .npy interop tests
  python3-torch python3-torchvision  # PyTorch CPU: golden tests, model parity, side-by-side benchmarks
  python3-pip                        # installs timm (below)
  libpng-dev libdeflate-dev          # PNG reading and writing (data/png.cpp)
  libtiff-dev libstb-dev             # TIFF (libtiff) and JPEG (stb_image) reading
  python3-pil python3-tifffile       # reader tests against files written by other tools, PIL benchmark
  python3-png libtiff-tools          # ... interlaced PNGs (pypng) and YCbCr JPEG-in-TIFF (tiffcp)
  clang libclang-rt-14-dev libomp-dev  # libFuzzer builds of the readers (scripts/fuzz.sh)
)

# timm, the reference of hpa's two timm models (se_resnext50_32x4d, inception_v4) in the
# float64 parity test (tests/py/test_torch_parity.py, tools/torch_parity.py). Pinned: the
# version whose models were checked against hpa's. --no-deps keeps Debian's torch and
# torchvision (pip would otherwise replace them); of timm's other declared dependencies,
# pyyaml comes with python3-torch and huggingface_hub and safetensors are optional at
# import (hub downloads only), so none is installed.
timm_version=1.0.31

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

if /usr/bin/python3 -c "import sys, timm; sys.exit(timm.__version__ != '$timm_version')" 2>/dev/null; then
  echo "setup: timm $timm_version present"
else
  echo "setup: installing timm $timm_version (pip)"
  "${sudo_cmd[@]}" /usr/bin/python3 -m pip install -q --no-deps --break-system-packages --root-user-action=ignore \
    --disable-pip-version-check "timm==$timm_version"
fi
