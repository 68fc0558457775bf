#!/usr/bin/env bash
# Side-by-side CPU comparison of the engine with PyTorch on this machine, in one run:
# bench/bench_cpu_ops (Google Benchmark, JSON) and tools/torch_cpu_bench.py (Debian's
# /usr/bin/python3 with python3-torch) at the same shapes, thread count and timing method
# (median of repetitions after warm-up). The two alternate for --rounds rounds so that
# background load hits both alike; each side keeps its best round. Prints the table of
# times and hpa_time / torch_time ratios (below 1: hpa faster), and the machine ceilings.
#
# --blas instead compares the candidate CPU BLAS libraries without relinking: bench_gemm
# and the engine's conv/linear benchmarks under OpenBLAS pthread (the linked default),
# OpenBLAS openmp (LD_LIBRARY_PATH) and BLIS openmp/pthread (LD_PRELOAD), plus oneDNN's
# sgemm (dlopen'ed by bench_gemm). Needs libopenblas0-openmp, libblis4-openmp and
# libblis4-pthread installed.
#
# Usage: tools/run_cpu_bench.sh [--build-dir DIR] [--threads N] [--rounds R]
#          [--repetitions K] [--min-time S] [--filter REGEX] [--out DIR] [--markdown] [--blas]
# --rounds 0 --out DIR re-prints the table of an earlier run without measuring.
# Build first: cmake -S . -B build -DHPA_BUILD_BENCH=ON && cmake --build build --target bench_cpu_ops bench_gemm
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root/build"
threads="${OMP_NUM_THREADS:-2}"
rounds=3
repetitions=5
min_time=0.5
filter=""
out_dir=""
markdown=0
blas=0
python=/usr/bin/python3  # Debian's, with python3-torch; not a pyenv python on PATH

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --repetitions) repetitions="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --markdown) markdown=1; shift ;;
    --blas) blas=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "run_cpu_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

for exe in bench_cpu_ops bench_gemm; do
  if [[ ! -x "$build_dir/$exe" ]]; then
    echo "run_cpu_bench.sh: $build_dir/$exe not found; configure with -DHPA_BUILD_BENCH=ON and build it" >&2
    exit 2
  fi
done
[[ -n "$out_dir" ]] || out_dir="$(mktemp -d /tmp/hpa_cpu_bench.XXXXXX)"
mkdir -p "$out_dir"

export OMP_NUM_THREADS="$threads"
gbench_flags=(--benchmark_repetitions="$repetitions" --benchmark_report_aggregates_only=true
              --benchmark_min_time="$min_time" --benchmark_out_format=json)
[[ -n "$filter" ]] && gbench_flags+=(--benchmark_filter="$filter")

model="$(lscpu | sed -n 's/^Model name: *//p')"
echo "machine: $model, $(nproc) CPUs; threads $threads; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>};" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); results in $out_dir"

status=0
if [[ $blas -eq 0 ]]; then
  for ((r = 1; r <= rounds; r++)); do
    echo "round $r/$rounds: hpa" >&2
    "$build_dir/bench_cpu_ops" "${gbench_flags[@]}" --benchmark_out="$out_dir/hpa_$r.json" >"$out_dir/hpa_$r.txt" 2>&1 \
      || { status=1; echo "bench_cpu_ops failed (see $out_dir/hpa_$r.txt)" >&2; grep -h "VALIDATION FAILED" "$out_dir/hpa_$r.txt" >&2 || true; }
    echo "round $r/$rounds: torch" >&2
    "$python" "$root/tools/torch_cpu_bench.py" --threads "$threads" --repetitions "$repetitions" \
      --min-time "$min_time" --filter "$filter" --json "$out_dir/torch_$r.json" >"$out_dir/torch_$r.txt" 2>&1 || status=1
  done
  "$python" - "$out_dir" "$rounds" "$markdown" <<'EOF'
import glob, json, math, sys

out_dir, rounds, markdown = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

def load_hpa(path):
    data = json.load(open(path))
    res = {}
    for b in data["benchmarks"]:
        name = b.get("run_name", b["name"]).replace("/manual_time", "")
        if b.get("error_occurred"):
            res[name] = {"error": b.get("error_message", "error")}
        elif b.get("aggregate_name", "median") == "median":
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            res[name] = {"s": b["real_time"] * scale, "GFLOP/s": b.get("GFLOP/s"), "GB/s": b.get("GB/s")}
    return res

def load_torch(path):
    data = json.load(open(path))
    return {b["name"]: {"s": b["median_s"], "GFLOP/s": b.get("gflops"), "GB/s": b.get("gbps")}
            for b in data["benchmarks"]}

def best(runs):
    """Per benchmark: the best round (min time) and the spread max/min - 1 of the rounds."""
    out = {}
    for name in {n for r in runs for n in r}:
        ok = [r[name] for r in runs if name in r and "error" not in r[name]]
        if not ok:
            out[name] = next(r[name] for r in runs if name in r)
            continue
        b = dict(min(ok, key=lambda v: v["s"]))
        b["spread"] = max(v["s"] for v in ok) / b["s"] - 1
        out[name] = b
    return out

hpa = best([load_hpa(p) for p in sorted(glob.glob(f"{out_dir}/hpa_*.json"))])
torch = best([load_torch(p) for p in sorted(glob.glob(f"{out_dir}/torch_*.json"))])
peak = hpa.get("ceiling/fma_peak", {}).get("GFLOP/s")

rows, ratios = [], {}
# Registration order of bench_cpu_ops (shape by shape, forward then backward), then any
# benchmark only PyTorch ran.
first = sorted(glob.glob(f"{out_dir}/hpa_*.json"))
order = []
for b in (json.load(open(first[0]))["benchmarks"] if first else []):
    name = b.get("run_name", b["name"]).replace("/manual_time", "")
    if name not in order and not name.startswith("ceiling/"):
        order.append(name)
order += [n for n in hpa if n not in order and not n.startswith("ceiling/")]
order += [n for n in torch if n not in order and "@" not in n]
ratios_best = {}
for name in order:
    h, t = hpa.get(name, {}), torch.get(name, {})
    cl = torch.get(name + "@channels_last", {})
    kind = name.split("/")[0]
    ratio = h["s"] / t["s"] if "s" in h and "s" in t else None
    torch_best = min([v["s"] for v in (t, cl) if "s" in v], default=None)
    ratio_best = h["s"] / torch_best if "s" in h and torch_best else None
    if ratio:
        ratios.setdefault(kind, []).append(ratio)
    if ratio_best:
        ratios_best.setdefault(kind, []).append(ratio_best)
    def rate(v):
        if v.get("GFLOP/s"):
            return f"{v['GFLOP/s']:.1f} GFLOP/s"
        if v.get("GB/s"):
            return f"{v['GB/s']:.1f} GB/s"
        return ""
    spreads = [v.get("spread", 0) for v in (h, t, cl)]
    rows.append([name,
                 f"{h['s'] * 1e3:.2f}" if "s" in h else h.get("error", "missing"),
                 f"{t['s'] * 1e3:.2f}" if "s" in t else "missing",
                 f"{ratio:.2f}" if ratio else "-",
                 f"{cl['s'] * 1e3:.2f}" if "s" in cl else "",
                 f"{ratio_best:.2f}" if ratio_best and cl else "",
                 rate(h),
                 f"{100 * h['GFLOP/s'] / peak:.0f}%" if peak and h.get("GFLOP/s") else "",
                 f"{100 * max(spreads):.0f}%"])

header = ["benchmark", "hpa ms", "torch ms", "hpa/torch", "torch CL ms", "hpa/best torch", "hpa rate",
          "hpa % FMA peak", "round spread"]
if markdown:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
else:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)))

print()
def geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs))
for kind, rs in ratios.items():
    extra = f"; vs the faster torch layout {geomean(ratios_best[kind]):.2f}" if kind.startswith("conv") else ""
    print(f"geometric mean hpa/torch, {kind}: {geomean(rs):.2f} ({len(rs)} shapes){extra}")
all_r = [x for rs in ratios.values() for x in rs]
all_b = [x for rs in ratios_best.values() for x in rs]
if all_r:
    print(f"geometric mean hpa/torch, all: {geomean(all_r):.2f}; vs the faster torch layout {geomean(all_b):.2f}")
ceil = {k: v for k, v in hpa.items() if k.startswith("ceiling/")}
if ceil:
    print("ceilings (hpa bench, best round): " + ", ".join(
        f"{k.split('/')[1]} {v.get('GFLOP/s') or v.get('GB/s'):.1f} {'GFLOP/s' if v.get('GFLOP/s') else 'GB/s'}"
        for k, v in sorted(ceil.items()) if "s" in v))
print(f"best of {len(glob.glob(f'{out_dir}/hpa_*.json'))} rounds per side; 'round spread' = slowest/fastest round - 1 "
      "(noise indicator); torch CL = PyTorch with channels_last tensors; hpa % FMA peak against ceiling/fma_peak")
EOF
  exit $status
fi

# ---- --blas: the BLAS candidates ----------------------------------------------------------
lib=/usr/lib/x86_64-linux-gnu
variants=("openblas-pthread||" "openblas-openmp|LD_LIBRARY_PATH=$lib/openblas-openmp|"
          "blis-openmp||LD_PRELOAD=$lib/blis-openmp/libblis.so.4" "blis-pthread||LD_PRELOAD=$lib/blis-pthread/libblis.so.4")
# Rounds outside, variants inside: background load then drifts over all variants alike.
for ((r = 1; r <= rounds; r++)); do
  for v in "${variants[@]}"; do
    IFS='|' read -r name ldpath preload <<<"$v"
    if [[ -n "$preload" && ! -e "${preload#LD_PRELOAD=}" ]] || [[ -n "$ldpath" && ! -d "${ldpath#LD_LIBRARY_PATH=}" ]]; then
      [[ $r -eq 1 ]] && echo "skipping $name (not installed)" >&2
      continue
    fi
    echo "round $r/$rounds: $name" >&2
    # The engine keeps BLAS single-threaded (kernels/gemm.h); BLIS reads BLIS_NUM_THREADS.
    env ${ldpath:+"$ldpath"} ${preload:+"$preload"} BLIS_NUM_THREADS=1 "$build_dir/bench_gemm" "${gbench_flags[@]}" \
      --benchmark_out="$out_dir/gemm_${name}_$r.json" >"$out_dir/gemm_${name}_$r.txt" 2>&1 || status=1
    env ${ldpath:+"$ldpath"} ${preload:+"$preload"} BLIS_NUM_THREADS=1 "$build_dir/bench_cpu_ops" "${gbench_flags[@]}" \
      --benchmark_filter="${filter:-conv2d|linear}" --benchmark_out="$out_dir/ops_${name}_$r.json" \
      >"$out_dir/ops_${name}_$r.txt" 2>&1 || status=1
  done
done
"$python" - "$out_dir" "$markdown" <<'EOF'
import collections, glob, json, math, re, sys

out_dir, markdown = sys.argv[1], sys.argv[2] == "1"
variants = ["openblas-pthread", "openblas-openmp", "blis-openmp", "blis-pthread"]
table = collections.defaultdict(dict)  # row -> column -> best GFLOP/s
sources = {}
for path in glob.glob(f"{out_dir}/*.json"):
    m = re.match(r"(gemm|ops)_(.+)_\d+\.json", path.split("/")[-1])
    if not m:
        continue
    kind, variant = m.groups()
    data = json.load(open(path))
    if kind == "gemm":
        sources[variant] = data["context"].get("cblas_sgemm_from", "?")
    for b in data["benchmarks"]:
        if b.get("error_occurred") or b.get("aggregate_name", "median") != "median":
            continue
        name = b.get("run_name", b["name"]).replace("/manual_time", "")
        col = variant
        if name.startswith("sgemm/dnnl/"):
            col = "oneDNN sgemm"
        row = re.sub(r"^sgemm/(cblas|dnnl)/", "sgemm/", name)
        if col == "oneDNN sgemm" and variant != "openblas-pthread":
            continue  # oneDNN ignores the BLAS variant: take its figures from the default runs only
        g = b.get("GFLOP/s", 0)
        table[row][col] = max(table[row].get(col, 0), g)
cols = [v for v in variants if any(v in r for r in table.values())] + ["oneDNN sgemm"]
header = ["GFLOP/s (best round)"] + cols
rows = [[r] + [f"{table[r][c]:.1f}" if c in table[r] else "" for c in cols] for r in sorted(table)]
if markdown:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * len(cols)) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
else:
    w = [max(len(x[i]) for x in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
print()
for v, s in sorted(sources.items()):
    print(f"{v}: cblas_sgemm from {s}")
groups = [("engine ops (bench_cpu_ops)", lambda r: not r.startswith("sgemm/")),
          ("sgemm, serial per thread (the engine's pattern)", lambda r: r.startswith("sgemm/serial_per_thread/")),
          ("sgemm, one threaded call", lambda r: r.startswith("sgemm/threaded/"))]
for title, pick in groups:
    for c in cols:
        rs = [table[r][c] / table[r]["openblas-pthread"] for r in table
              if pick(r) and c in table[r] and table[r].get("openblas-pthread")]
        if rs and c != "openblas-pthread":
            print(f"geometric mean GFLOP/s vs openblas-pthread, {title}, {c}: "
                  f"{math.exp(sum(map(math.log, rs)) / len(rs)):.2f} ({len(rs)} rows)")
EOF
exit $status
