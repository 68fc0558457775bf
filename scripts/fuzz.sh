#!/usr/bin/env bash
# Fuzzes the data readers with libFuzzer: builds fuzz/fuzz_{png,tiff,csv,pack}.cpp with clang++
# and -fsanitize=fuzzer,address,undefined (the data library instrumented too), then runs each
# target for SECONDS seconds from its seed corpus fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        e.g. scripts/fuzz.sh 120 png pack
#   scripts/fuzz.sh --merge [TARGET...]          fold new coverage into fuzz/corpus/ (minimised)
#
# The repository corpus is only read; new inputs go to $BUILD/corpus/<target>/ and crashes,
# leaks, timeouts and sanitizer reports to $BUILD/artifacts/<target>/ (reproduce one with
# `$BUILD/fuzz_<target> FILE`). Exits non-zero when any target found a problem. The same
# corpus is replayed without clang by the fuzz_corpus_* ctests of a normal build.
# Environment: HPA_FUZZ_BUILD_DIR (default build-fuzz), HPA_FUZZ_JOBS (build jobs, default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HPA_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${HPA_FUZZ_JOBS:-2}"
all_targets=(png tiff csv pack safetensors)

merge=0
seconds=60
if [[ "${1:-}" == "--merge" ]]; then
  merge=1
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev libomp-dev)"; exit 2; }

cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHPA_BUILD_FUZZ=ON -DHPA_BUILD_TESTS=OFF -DHPA_BUILD_BENCH=OFF -DHPA_CUDA=OFF -DHPA_NATIVE=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

status=0
for t in "${targets[@]}"; do
  seeds="$root/fuzz/corpus/$t"
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  if ((merge)); then
    # Keep the repository corpus small: only inputs that add coverage, and only small ones
    # (packs need their 4 KiB header page).
    max_bytes=1024
    [[ "$t" == csv ]] && max_bytes=96
    [[ "$t" == pack ]] && max_bytes=4400
    small="$build/small/$t"
    rm -rf "$small" && mkdir -p "$small"
    find "$work" -type f -size -"$((max_bytes + 1))"c -exec cp {} "$small/" \;
    "$build/fuzz_$t" -merge=1 "$seeds" "$small" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
    continue
  fi
  echo "== fuzz_$t for ${seconds}s =="
  if ! "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$seeds" 2>"$build/fuzz_$t.log"; then
    echo "fuzz_$t: FAILED, see $build/fuzz_$t.log and $artifacts/"
    tail -40 "$build/fuzz_$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/fuzz_$t.log" | tail -2
  fi
done
exit "$status"
