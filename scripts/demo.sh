#!/usr/bin/env bash
# Builds hpa and runs the main job. Until hpa_train exists this is the engine demo: a small
# conv net fitted to synthetic 4-channel data, printing a falling loss.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${HPA_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target hpa_demo
"$build/hpa_demo" "$@"
