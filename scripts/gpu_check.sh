#!/usr/bin/env bash
# GPU verification in one go, on a machine with an NVIDIA GPU (H100/H200, sm_90):
#   1. configure for sm_90 and build everything (warnings are errors);
#   2. run the `gpu`-labelled parity tests (ctest -L gpu);
#   3. run compute-sanitizer memcheck and racecheck over each test_gpu_* program, with
#      HPA_CUDA_ALLOC=plain so every tensor is its own allocation;
#   4. run the GPU benchmarks (bench_gpu_*), JSON kept under $HPA_GPU_CHECK_OUT;
#   5. time whole training steps: hpa_bench step resnet50 4x512^2 batch 32 (f32), and the
#      same step in PyTorch eager (tools/torch_step_bench.py) when the python3 on PATH has
#      a CUDA build of torch and torchvision;
#   6. print a summary table last.
# Usage: bash scripts/gpu_check.sh [build-dir]   (default build-gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
out=${HPA_GPU_CHECK_OUT:-$build/gpu_check}
arch=${HPA_CUDA_ARCH:-90}
mkdir -p "$out"
declare -a rows=()
row() { rows+=("$(printf '%-44s %-6s %s' "$1" "$2" "$3")"); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt" \
  || echo "gpu_check: nvidia-smi not found"

if cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHPA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     -DHPA_WERROR=ON > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1; then
  row "build (sm_$arch)" PASS ""
else
  row "build (sm_$arch)" FAIL "see $out/configure.log, $out/build.log"
  tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null
  printf '%s\n' "${rows[@]}"
  exit 1
fi

if ctest --test-dir "$build" -L gpu --output-on-failure > "$out/ctest_gpu.log" 2>&1; then
  row "ctest -L gpu" PASS "$(grep -E 'tests passed' "$out/ctest_gpu.log" | tail -1)"
else
  row "ctest -L gpu" FAIL "$(grep -E 'tests passed|tests failed' "$out/ctest_gpu.log" | tail -1)"
fi
# Parity tests must have run, not skipped.
if grep -q "no GPU present" "$out/ctest_gpu.log"; then row "gpu tests actually ran" FAIL "skipped: no GPU seen"; fi

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for t in "$build"/test_gpu_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  for tool in memcheck racecheck; do
    log="$out/${name}_${tool}.log"
    if HPA_CUDA_ALLOC=plain "$sanitizer" --tool "$tool" --error-exitcode 99 "$t" > "$log" 2>&1; then
      row "$tool $name" PASS "$(grep -E 'ERROR SUMMARY' "$log" | tail -1)"
    else
      row "$tool $name" FAIL "$(grep -E 'ERROR SUMMARY|FAILED' "$log" | tail -1) ($log)"
    fi
  done
done

for b in "$build"/bench_gpu_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  if "$b" --benchmark_format=console --benchmark_out="$out/$name.json" --benchmark_out_format=json \
       > "$out/$name.txt" 2>&1; then
    row "bench $name" PASS "$out/$name.txt"
  else
    row "bench $name" FAIL "$out/$name.txt"
  fi
  cat "$out/$name.txt"
done

step_args=(--model resnet50 --batch 32 --size 512 --warmup 3 --iters 10 --json)
if "$build/hpa_bench" step "${step_args[@]}" --device cuda > "$out/step_hpa.json" 2> "$out/step_hpa.err"; then
  row "hpa_bench step resnet50 32x4x512^2" PASS "$(cat "$out/step_hpa.json")"
else
  row "hpa_bench step resnet50 32x4x512^2" FAIL "$(tail -1 "$out/step_hpa.err")"
fi
if python3 -c "import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  if python3 tools/torch_step_bench.py "${step_args[@]}" --device cuda > "$out/step_torch.json" 2> "$out/step_torch.err"; then
    row "torch step resnet50 32x4x512^2" PASS "$(cat "$out/step_torch.json")"
  else
    row "torch step resnet50 32x4x512^2" FAIL "$(tail -1 "$out/step_torch.err")"
  fi
else
  row "torch step resnet50 32x4x512^2" SKIP "no CUDA build of torch/torchvision on this python3"
fi

echo
echo "== gpu_check summary ($(cat "$out/gpu.txt" 2>/dev/null | head -1)) =="
printf '%s\n' "${rows[@]}"
! printf '%s\n' "${rows[@]}" | grep -q " FAIL "
