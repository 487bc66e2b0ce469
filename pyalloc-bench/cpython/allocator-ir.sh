#!/usr/bin/env bash
# Instructions inside CPython's OBJ-domain entry points (PyObject_Malloc, _Calloc, _Realloc,
# _Free; inclusive, so whatever allocator serves them is counted) while an interpreter runs
# pyperformance benchmarks' own functions (drive.py), counted by callgrind, which repeats
# exactly where wall-clock times of whole interpreters move by ±20% on these machines.
#
# usage: pyalloc-bench/cpython/allocator-ir.sh PYTHON [NAME:LOOPS ...]
#   PYTHON  the interpreter binary itself (not a pyenv shim): python3's `sys.executable`, or
#           target/release/pyalloc-python
#   default benchmarks: float:1 go:1 richards:2 json_dumps:1 nbody:1
# Needs valgrind and pyperformance (for the benchmark sources and pyperf): a venv is made in
# $PYPERF_VENV (default target/pyperf-venv) with `pip install pyperformance` if it is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$1
shift
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(float:1 go:1 richards:2 json_dumps:1 nbody:1)

venv=${PYPERF_VENV:-$here/../../target/pyperf-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyperformance
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
benchmarks="$site/pyperformance/data-files/benchmarks"

printf '%-11s %14s %16s\n' benchmark "allocator Ir" "program Ir"
for spec in "${benches[@]}"; do
    name=${spec%%:*} loops=${spec##*:}
    out=$(mktemp)
    PYTHONPATH=$site valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$python" "$here/drive.py" "$benchmarks" "$name" "$loops" >/dev/null 2>&1
    callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
        awk -v name="$name" '
            /:PyObject_(Malloc|Calloc|Realloc|Free) / { gsub(",", "", $1); sum += $1 }
            /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
            END { printf "%-11s %14d %16d\n", name, sum, total }'
    rm -f "$out"
done
