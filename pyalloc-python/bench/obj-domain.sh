#!/usr/bin/env bash
# The issue's speed figure for pyalloc-python: the inclusive instructions (callgrind's Ir)
# inside CPython's OBJ-domain entry points (PyObject_Malloc, PyObject_Calloc, PyObject_Realloc,
# PyObject_Free) on pyperformance's float, go, richards, json_dumps and nbody, with stock
# CPython (python3: pymalloc) and with pyalloc-python (pyalloc), and the ratio.
#
#     pyalloc-python/bench/obj-domain.sh [BENCHMARK...]    # default: the five
#
# Both interpreters are the same pyenv CPython (pyalloc-python embeds python3's libpython),
# run with the same arguments and environment (PYTHONHASHSEED=0, PYTHONPATH to the venv's
# site-packages): only the OBJ and MEM domains' allocator differs. Each run is
# obj_domain_driver.py calling the benchmark's timed function LOOPS times (default 1) after
# importing it, the whole process under callgrind (interpreter start-up and shutdown
# included, the same in both). The wrappers call the domain's allocator through a function
# pointer in both builds, so the comparison is the allocators'.
#
# Environment:
#   PYALLOC_BENCH_VENV  a venv with pyperformance (created with python3 and filled from PyPI
#                       when missing; default target/bench-venv)
#   LOOPS               loops per run (default 1)
#   OUT                 where the callgrind files go (default target/obj-domain)
#   NO_BUILD=1          use target/release/pyalloc-python as it is
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

venv=${PYALLOC_BENCH_VENV:-$root/target/bench-venv}
loops=${LOOPS:-1}
out=${OUT:-$root/target/obj-domain}
benchmarks=("$@")
[[ ${#benchmarks[@]} -gt 0 ]] || benchmarks=(float go richards json_dumps nbody)

# The interpreter itself, not pyenv's shim (a shell script callgrind would follow).
stock=$(python3 -c 'import sys; print(sys.executable)')
if [[ ! -x $venv/bin/python ]]; then
    "$stock" -m venv "$venv"
    "$venv/bin/pip" install --quiet "pyperformance==1.14.0"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
data=$("$venv/bin/python" -c 'import os, pyperformance; print(os.path.join(os.path.dirname(pyperformance.__file__), "data-files", "benchmarks"))')

if [[ -z ${NO_BUILD:-} ]]; then
    nice -n 10 cargo build --release -p pyalloc-python
fi
pyalloc="${CARGO_TARGET_DIR:-$root/target}/release/pyalloc-python"
driver=$root/pyalloc-python/bench/obj_domain_driver.py
summ=$root/pyalloc-python/bench/obj_domain_sum.py
mkdir -p "$out"

run() { # allocator interpreter benchmark
    PYTHONHASHSEED=0 PYTHONPATH=$site valgrind --tool=callgrind --dump-instr=no \
        --callgrind-out-file="$out/$3.$1.out" "$2" "$driver" "$data" "$3" "$loops" \
        >"$out/$3.$1.log" 2>&1 || { cat "$out/$3.$1.log"; exit 1; }
}

echo "| benchmark | pymalloc calls | Ir/call | pymalloc Ir | pyalloc calls | Ir/call | pyalloc Ir | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for b in "${benchmarks[@]}"; do
    run pymalloc "$stock" "$b"
    run pyalloc "$pyalloc" "$b"
    read -r sc si < <(python3 "$summ" --total "$out/$b.pymalloc.out")
    read -r pc pi < <(python3 "$summ" --total "$out/$b.pyalloc.out")
    python3 - "$b" "$sc" "$si" "$pc" "$pi" <<'PY'
import sys
b, sc, si, pc, pi = sys.argv[1], *map(int, sys.argv[2:])
print(f"| {b} | {sc:,} | {si / sc:.2f} | {si:,} | {pc:,} | {pi / pc:.2f} | {pi:,} "
      f"| {pi / si:.3f} |")
PY
done
echo "per-function figures: python3 pyalloc-python/bench/obj_domain_sum.py $out/*.out"
