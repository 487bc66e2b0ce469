#!/usr/bin/env bash
# Wall time of pyperformance's float, go, richards, json_dumps and nbody with python3
# (pymalloc) and pyalloc-python (pyalloc), with pyperf: each benchmark script run by each
# interpreter, pyperf's worker processes being the same interpreter (sys.executable).
#
#     pyalloc-python/bench/wall.sh [BENCHMARK...]
#
# Prints, per benchmark and interpreter, pyperf's median, mean ± standard deviation, and the
# fastest and slowest value, and the ratio of the medians. Shared or busy machines move these
# by tens of percent between identical builds: obj-domain.sh's instruction counts are the
# figure that decides; this is the time it takes.
#
# Environment: PYALLOC_BENCH_VENV, PYALLOC_PYTHON and NO_BUILD as for obj-domain.sh;
# PROCESSES (default 10) worker processes of VALUES (default 3) values each, after 1 warm-up;
# OUT (default target/wall) for pyperf's JSON files.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

venv=${PYALLOC_BENCH_VENV:-$root/target/bench-venv}
out=${OUT:-$root/target/wall}
processes=${PROCESSES:-10}
values=${VALUES:-3}
benchmarks=("$@")
[[ ${#benchmarks[@]} -gt 0 ]] || benchmarks=(float go richards json_dumps nbody)

stock=$(python3 -c 'import sys; print(sys.executable)')
if [[ ! -x $venv/bin/python ]]; then
    "$stock" -m venv "$venv"
    "$venv/bin/pip" install --quiet "pyperformance==1.14.0"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
data=$("$venv/bin/python" -c 'import os, pyperformance; print(os.path.join(os.path.dirname(pyperformance.__file__), "data-files", "benchmarks"))')
if [[ -z ${NO_BUILD:-} && -z ${PYALLOC_PYTHON:-} ]]; then
    nice -n 10 cargo build --release -p pyalloc-python
fi
pyalloc=${PYALLOC_PYTHON:-${CARGO_TARGET_DIR:-$root/target}/release/pyalloc-python}
mkdir -p "$out"

echo "| benchmark | allocator | median | mean ± std dev | min … max | median / pymalloc's |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for b in "${benchmarks[@]}"; do
    for which in pymalloc pyalloc; do
        interp=$stock
        [[ $which == pyalloc ]] && interp=$pyalloc
        rm -f "$out/$b.$which.json"
        # PYTHONPATH reaches pyperf's workers only through --inherit-environ.
        PYTHONHASHSEED=0 PYTHONPATH=$site "$interp" "$data/bm_$b/run_benchmark.py" --quiet \
            --inherit-environ PYTHONPATH,PYTHONHASHSEED --processes "$processes" \
            --values "$values" --warmups 1 -o "$out/$b.$which.json" >/dev/null
    done
    PYTHONPATH=$site "$stock" - "$b" "$out/$b.pymalloc.json" "$out/$b.pyalloc.json" <<'PY'
import sys
import pyperf
b, stock_path, pyalloc_path = sys.argv[1:]
medians = {}
for which, path in (("pymalloc", stock_path), ("pyalloc", pyalloc_path)):
    bench = pyperf.Benchmark.load(path)
    values = bench.get_values()
    ms = lambda s: f"{s * 1e3:.1f} ms"
    medians[which] = bench.median()
    ratio = medians[which] / medians["pymalloc"]
    print(f"| {b} | {which} | {ms(bench.median())} | {ms(bench.mean())} ± {ms(bench.stdev())} "
          f"| {ms(min(values))} … {ms(max(values))} | {ratio:.3f} |")
PY
done
