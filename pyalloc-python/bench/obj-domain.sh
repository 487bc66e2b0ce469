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
# included, the same in both); a second run of 0 loops per benchmark and interpreter gives
# the start-up's share, and the difference is the benchmark alone. The wrappers call the
# domain's allocator through a function pointer in both builds, so the comparison is the
# allocators'. Callgrind's counts do not vary from run to run (nor with the machine's load).
#
# Environment:
#   PYALLOC_BENCH_VENV  a venv with pyperformance (created with python3 and filled from PyPI
#                       when missing; default target/bench-venv)
#   LOOPS               loops per run (default 1)
#   OUT                 where the callgrind files go (default target/obj-domain)
#   NO_BUILD=1          use target/release/pyalloc-python as it is
#   PYALLOC_PYTHON      the pyalloc-python binary to measure (implies NO_BUILD)
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

if [[ -z ${NO_BUILD:-} && -z ${PYALLOC_PYTHON:-} ]]; then
    nice -n 10 cargo build --release -p pyalloc-python
fi
pyalloc=${PYALLOC_PYTHON:-${CARGO_TARGET_DIR:-$root/target}/release/pyalloc-python}
driver=$root/pyalloc-python/bench/obj_domain_driver.py
summ=$root/pyalloc-python/bench/obj_domain_sum.py
mkdir -p "$out"

run() { # allocator interpreter benchmark loops
    PYTHONHASHSEED=0 PYTHONPATH=$site valgrind --tool=callgrind --dump-instr=no \
        --callgrind-out-file="$out/$3.$4.$1.out" "$2" "$driver" "$data" "$3" "$4" \
        >"$out/$3.$4.$1.log" 2>&1 || { cat "$out/$3.$4.$1.log"; exit 1; }
    python3 "$summ" --total "$out/$3.$4.$1.out"
}

# Two rows per benchmark: the whole run (LOOPS loops, start-up included), and the benchmark
# alone: that run less a run of 0 loops (start-up, imports and inputs only), which leaves the
# calls the benchmark's loops make.
echo "| benchmark | part | pymalloc calls | Ir/call | pymalloc Ir | pyalloc calls | Ir/call | pyalloc Ir | ratio |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for b in "${benchmarks[@]}"; do
    read -r sc si < <(run pymalloc "$stock" "$b" "$loops")
    read -r pc pi < <(run pyalloc "$pyalloc" "$b" "$loops")
    read -r sc0 si0 < <(run pymalloc "$stock" "$b" 0)
    read -r pc0 pi0 < <(run pyalloc "$pyalloc" "$b" 0)
    python3 - "$b" "$loops" "$sc" "$si" "$pc" "$pi" "$sc0" "$si0" "$pc0" "$pi0" <<'PY'
import sys
b, loops = sys.argv[1:3]
sc, si, pc, pi, sc0, si0, pc0, pi0 = map(int, sys.argv[3:])
def row(part, sc, si, pc, pi):
    print(f"| {b} | {part} | {sc:,} | {si / sc:.2f} | {si:,} | {pc:,} | {pi / pc:.2f} | {pi:,} "
          f"| {pi / si:.3f} |")
row(f"whole run ({loops} loop{'s' if loops != '1' else ''})", sc, si, pc, pi)
row("benchmark alone", sc - sc0, si - si0, pc - pc0, pi - pi0)
PY
done
echo "per-function figures: python3 pyalloc-python/bench/obj_domain_sum.py $out/*.out"
