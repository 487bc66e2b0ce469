#!/usr/bin/env python3
"""Runs one pyperformance benchmark's own function a fixed number of times, without pyperf's
runner (which spawns workers), so that callgrind sees one process doing the benchmark's work.

usage: drive.py BENCHMARKS_DIR NAME LOOPS"""
import importlib.util
import sys

bench_dir, name, loops = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = importlib.util.spec_from_file_location(
    "bm_" + name, f"{bench_dir}/bm_{name}/run_benchmark.py")
bm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bm)

if name == "float":
    run = lambda: bm.benchmark(bm.POINTS)
elif name == "go":
    run = bm.versus_cpu
elif name == "richards":
    richards = bm.Richards()
    run = lambda: richards.run(1)
elif name == "json_dumps":
    data = [(obj, range(count)) for obj, count in (getattr(bm, c) for c in bm.CASES)]
    run = lambda: bm.bench_json_dumps(data)
elif name == "nbody":
    run = lambda: bm.bench_nbody(1, bm.DEFAULT_REFERENCE, bm.DEFAULT_ITERATIONS)
else:
    sys.exit(f"unknown benchmark {name}")
for _ in range(loops):
    run()
