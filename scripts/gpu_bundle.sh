#!/usr/bin/env bash
# Packs a CUDA build's GPU programs for a GPU machine that has the NVIDIA driver, CUDA and
# cuDNN (for instance inside PyTorch's wheels) but none of hpa's build dependencies
# (OpenBLAS, libpng, libtiff, ...): build here, run there with scripts/gpu_check.sh.
#
#   bash scripts/gpu_bundle.sh BUILD_DIR BUNDLE_DIR
#
# BUNDLE_DIR/bin gets the test_gpu_*, bench_gpu_*, hpa_bench and hpa_model programs of BUILD_DIR;
# BUNDLE_DIR/lib every shared library they load except the C runtime (libc, libm,
# libstdc++, libgcc_s, ...: the target's own, which must be at least as new as the build
# machine's) and the NVIDIA libraries (the driver's, and CUDA/cuDNN/cuBLAS/NCCL, which are
# large and which gpu_check.sh finds on the target). Then, there:
#
#   HPA_GPU_CHECK_PREBUILT=BUNDLE_DIR bash scripts/gpu_check.sh
set -euo pipefail
build=${1:?usage: gpu_bundle.sh BUILD_DIR BUNDLE_DIR}
bundle=${2:?usage: gpu_bundle.sh BUILD_DIR BUNDLE_DIR}
[ -f "$build/CMakeCache.txt" ] || { echo "gpu_bundle: $build is not a CMake build directory" >&2; exit 1; }
[ -f "$build/libhpa_cuda.a" ] || { echo "gpu_bundle: $build has no CUDA backend (configure with -DHPA_CUDA=ON, build it)" >&2; exit 1; }

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
shopt -s nullglob
programs=()
for p in "$build"/test_gpu_* "$build"/bench_gpu_* "$build"/hpa_bench "$build"/hpa_model; do
  [ -f "$p" ] && [ -x "$p" ] && programs+=("$p")
done
((${#programs[@]})) || { echo "gpu_bundle: no GPU programs in $build (build it first)" >&2; exit 1; }
cp "${programs[@]}" "$bundle/bin/"
strip --strip-debug "$bundle"/bin/* 2>/dev/null || true

# The C runtime and NVIDIA's libraries stay behind (see above).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvrtc|libnvJitLink)'
declare -A copied=()
for p in "${programs[@]}"; do
  while read -r name _ path _; do
    [[ "$name" =~ $skip ]] && continue
    [ -n "${copied[$name]:-}" ] && continue
    [ -f "$path" ] || { echo "gpu_bundle: $p needs $name, not found here" >&2; exit 1; }
    cp -L "$path" "$bundle/lib/$name"
    copied[$name]=1
  done < <(ldd "$p" | awk '/=>/ {print $1, $2, $3, $4}')
done
du -sh "$bundle/bin" "$bundle/lib"
echo "gpu_bundle: ${#programs[@]} programs, ${#copied[@]} libraries in $bundle"
