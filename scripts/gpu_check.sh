#!/usr/bin/env bash
# GPU verification in one go, on a machine with an NVIDIA GPU (H100/H200, sm_90):
#   1. configure for sm_90 and build everything (warnings are errors), or, with
#      HPA_GPU_CHECK_PREBUILT=DIR, take the programs packed by scripts/gpu_bundle.sh (for a
#      GPU machine without hpa's build dependencies) and find CUDA, cuBLAS, cuDNN and NCCL
#      on this machine (the CUDA toolkit, or PyTorch's wheels);
#   2. run every test_gpu_* program: the CPU-vs-CUDA parity tests of each op, and of whole
#      models (test_gpu_models), the same tests as `ctest -L gpu`; they must run, not skip;
#   3. time whole training steps: hpa_bench step resnet50 4x512^2 batch 32 (f32 with TF32,
#      the default, and IEEE f32), and the same steps in PyTorch eager
#      (tools/torch_step_bench.py, also channels_last) when the python3 on PATH has a CUDA
#      build of torch and torchvision;
#   4. compute-sanitizer memcheck and racecheck over each test_gpu_* program (four at a
#      time), with HPA_CUDA_ALLOC=plain so every tensor is its own allocation; under the
#      sanitizer the model tests are cut to two models and the 2^31-element test is left
#      out (each would take longer than all the rest together);
#   5. the GPU micro-benchmarks (bench_gpu_*), JSON kept;
#   6. print a summary table last.
# HPA_GPU_CHECK_STEP_MODELS adds backbones to step 3 (hpa and PyTorch, TF32, batch 32 at
# 512^2; timm's two need timm on that python3).
# HPA_GPU_CHECK_ONLY picks steps (a list of: tests step sanitizer bench; default all) and
# HPA_GPU_CHECK_BENCHES the benchmark programs (default every bench_gpu_*): a rerun of what
# failed costs less device time.
# Every step has a time limit; HPA_GPU_CHECK_BUDGET_S (seconds, default 1500) bounds the
# whole run: the sanitizer and benchmark steps that would start past it are reported as
# SKIP. Logs go to $HPA_GPU_CHECK_OUT (default BUILD/gpu_check).
# Usage: bash scripts/gpu_check.sh [build-dir]   (default build-gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
budget=${HPA_GPU_CHECK_BUDGET_S:-1500}
prebuilt=${HPA_GPU_CHECK_PREBUILT:-}
build=${1:-build-gpu}
if [ -n "$prebuilt" ]; then bin="$prebuilt/bin"; else bin="$build"; fi
out=${HPA_GPU_CHECK_OUT:-$build/gpu_check}
only=" ${HPA_GPU_CHECK_ONLY:-tests step sanitizer bench} "
wanted() { [[ "$only" == *" $1 "* ]]; }
arch=${HPA_CUDA_ARCH:-90}
mkdir -p "$out"
out=$(cd "$out" && pwd)
declare -a rows=()
row() { rows+=("$(printf '%-46s %-5s %s' "$1" "$2" "$3")"); }
left() { echo $((budget - (SECONDS - start))); }
summary() {
  echo
  echo "== gpu_check summary ($(head -1 "$out/gpu.txt" 2>/dev/null); $((SECONDS - start)) s) =="
  printf '%s\n' "${rows[@]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null \
  | tee "$out/gpu.txt" || echo "gpu_check: nvidia-smi not found"

# ---- 1. programs ---------------------------------------------------------------------------
hpa_ld=${LD_LIBRARY_PATH:-}
if [ -n "$prebuilt" ]; then
  libdirs=("$(cd "$prebuilt/lib" && pwd)")
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libnccl.so.2; do
    found=$(find /usr/local /opt /usr/lib /usr/lib64 -name "$lib" \( -type f -o -type l \) 2>/dev/null | head -1)
    if [ -z "$found" ]; then
      row "find $lib" FAIL "not under /usr/local /opt /usr/lib"
      continue
    fi
    libdirs+=("$(dirname "$found")")
  done
  hpa_ld=$(printf '%s\n' "${libdirs[@]}" | awk '!seen[$0]++' | paste -sd:)${hpa_ld:+:$hpa_ld}
  missing=$(for p in "$bin"/*; do LD_LIBRARY_PATH="$hpa_ld" ldd "$p" | grep "not found" | sed "s|^|$(basename "$p"): |"; done)
  if [ -n "$missing" ]; then
    row "prebuilt programs load" FAIL "$(echo "$missing" | head -3 | tr '\n' ' ')"
  else
    row "prebuilt programs load" PASS "$(ls "$bin" | wc -l) programs; LD_LIBRARY_PATH=$hpa_ld"
  fi
elif cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHPA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
     -DHPA_WERROR=ON > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1; then
  row "build (sm_$arch)" PASS ""
else
  row "build (sm_$arch)" FAIL "see $out/configure.log, $out/build.log"
  tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null
  summary
  exit 1
fi
# Our programs get hpa_ld; python3 keeps the environment it came with.
hpa() { LD_LIBRARY_PATH="$hpa_ld" "$@"; }

# ---- 2. parity tests -----------------------------------------------------------------------
tests=("$bin"/test_gpu_*)
run_tests=("${tests[@]}")
wanted tests || run_tests=()
for t in "${run_tests[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  log="$out/$name.log"
  limit=120
  [ "$name" = test_gpu_models ] && limit=300
  hpa timeout "$limit" "$t" > "$log" 2>&1
  rc=$?
  result=$(grep -E '^\[  (PASSED|FAILED)  \]' "$log" | tr '\n' ' ')
  skipped=$(grep -c '^\[  SKIPPED \]' "$log")
  if [ "$rc" -eq 0 ] && [ "$skipped" -eq 0 ]; then
    row "test $name" PASS "$result"
  elif [ "$rc" -eq 0 ]; then
    row "test $name" FAIL "$skipped skipped (no GPU seen?) $result"
  else
    row "test $name" FAIL "rc $rc $result $(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | head -3 | tr '\n' ' ')"
  fi
done
grep -h '^\[ parity \]' "$out/test_gpu_models.log" 2>/dev/null

# ---- 3. whole training steps ----------------------------------------------------------------
if wanted step; then
  step_args=(--model resnet50 --batch 32 --size 512 --warmup 3 --iters 10 --json)
  # hpa with TF32 (the default) and IEEE f32; PyTorch the same, and channels_last, its
  # fastest memory format for cuDNN.
  step_run() {  # label, output name, command...
    local label=$1 name=$2
    shift 2
    if timeout 180 "$@" > "$out/$name.json" 2> "$out/$name.err"; then
      row "$label" PASS "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("median %.1f ms, %.1f img/s, peak %.0f MiB" % (d["median_ms"], d["images_per_s"], (d["peak_memory_bytes"] or 0)/2**20))' "$out/$name.json" 2>/dev/null)"
    else
      row "$label" FAIL "$(tail -2 "$out/$name.err" | tr '\n' ' ')"
    fi
  }
  step_run "hpa step resnet50 32x4x512^2 tf32" step_hpa env LD_LIBRARY_PATH="$hpa_ld" "$bin/hpa_bench" step "${step_args[@]}" --device cuda
  step_run "hpa step resnet50 32x4x512^2 f32" step_hpa_f32 env LD_LIBRARY_PATH="$hpa_ld" "$bin/hpa_bench" step "${step_args[@]}" --device cuda --no-tf32
  have_torch=0
  python3 -c "import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && have_torch=1
  if [ "$have_torch" = 1 ]; then
    step_run "torch step resnet50 32x4x512^2 tf32" step_torch python3 tools/torch_step_bench.py "${step_args[@]}" --device cuda
    step_run "torch step resnet50 32x4x512^2 tf32 NHWC" step_torch_nhwc python3 tools/torch_step_bench.py "${step_args[@]}" --device cuda --channels-last
    step_run "torch step resnet50 32x4x512^2 f32" step_torch_f32 python3 tools/torch_step_bench.py "${step_args[@]}" --device cuda --no-tf32
  else
    row "torch steps" SKIP "no CUDA build of torch/torchvision on this python3"
  fi
  # More backbones, TF32 only (HPA_GPU_CHECK_STEP_MODELS, e.g. "densenet121 inception_v4").
  for model in ${HPA_GPU_CHECK_STEP_MODELS:-}; do
    args=(--model "$model" --batch 32 --size 512 --warmup 3 --iters 10 --json)
    step_run "hpa step $model 32x4x512^2 tf32" "step_hpa_$model" env LD_LIBRARY_PATH="$hpa_ld" "$bin/hpa_bench" step "${args[@]}" --device cuda
    [ "$have_torch" = 1 ] || continue
    step_run "torch step $model 32x4x512^2 tf32" "step_torch_$model" python3 tools/torch_step_bench.py "${args[@]}" --device cuda
    step_run "torch step $model 32x4x512^2 tf32 NHWC" "step_torch_nhwc_$model" python3 tools/torch_step_bench.py "${args[@]}" --device cuda --channels-last
  done
fi

# ---- 4. compute-sanitizer -------------------------------------------------------------------
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# Runs one sanitizer job within the time left; its verdict goes to $log.verdict.
sanitize() {
  local tool=$1 t=$2 log=$3 limit=$4
  local filter=--gtest_filter=-*Past2To31*  # 8.6 GB tensors: minutes under the sanitizer
  [ "$(basename "$t")" = test_gpu_models ] && filter=--gtest_filter=GpuModels.ResNet18:GpuModels.GapNetPl
  OMP_NUM_THREADS=4 HPA_CUDA_ALLOC=plain hpa timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 99 "$t" "$filter" > "$log" 2>&1
  echo $? > "$log.rc"
}
jobs_list=()
sanitizer_tools=(memcheck racecheck)
wanted sanitizer || sanitizer_tools=()
for tool in "${sanitizer_tools[@]}"; do
  for t in "${tests[@]}"; do jobs_list+=("$tool $t"); done
done
sanitizer_end=$((budget - 150))  # leave time for the benchmarks
for job in "${jobs_list[@]}"; do
  read -r tool t <<< "$job"
  name=$(basename "$t")
  limit=$((sanitizer_end - (SECONDS - start)))
  if [ "$limit" -lt 20 ]; then
    row "$tool $name" SKIP "time budget"
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge 4 ]; do wait -n; done
  sanitize "$tool" "$t" "$out/${name}_${tool}.log" "$limit" &
done
wait
for job in "${jobs_list[@]}"; do
  read -r tool t <<< "$job"
  name=$(basename "$t")
  log="$out/${name}_${tool}.log"
  [ -f "$log.rc" ] || continue
  rc=$(cat "$log.rc")
  verdict=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    row "$tool $name" PASS "$verdict"
  elif [ "$rc" -eq 124 ]; then
    row "$tool $name" FAIL "timed out after its share of the budget"
  else
    row "$tool $name" FAIL "rc $rc $verdict ($(basename "$log"))"
  fi
done

# ---- 5. micro-benchmarks --------------------------------------------------------------------
benches=("$bin"/bench_gpu_*)
if [ -n "${HPA_GPU_CHECK_BENCHES:-}" ]; then
  benches=()
  for name in $HPA_GPU_CHECK_BENCHES; do benches+=("$bin/$name"); done
fi
wanted bench || benches=()
for b in "${benches[@]}"; do
  [ -x "$b" ] || { row "bench $(basename "$b")" FAIL "no such program"; continue; }
  name=$(basename "$b")
  limit=$(( $(left) < 120 ? $(left) : 120 ))
  if [ "$limit" -lt 15 ]; then
    row "bench $name" SKIP "time budget"
    continue
  fi
  if hpa timeout "$limit" "$b" --benchmark_min_time=0.2 --benchmark_format=console \
       --benchmark_out="$out/$name.json" --benchmark_out_format=json > "$out/$name.txt" 2>&1; then
    row "bench $name" PASS "$name.txt"
  else
    row "bench $name" FAIL "rc $? ($name.txt)"
  fi
  cat "$out/$name.txt"
done

summary
! printf '%s\n' "${rows[@]}" | grep -q " FAIL "
