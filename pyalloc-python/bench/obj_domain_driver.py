"""Runs one pyperformance benchmark's timed function a fixed number of times, without pyperf's
runner (no calibration, no worker processes): what obj-domain.sh measures under callgrind.

    python obj_domain_driver.py BENCHMARKS_DIR NAME LOOPS

BENCHMARKS_DIR is pyperformance's data-files/benchmarks; NAME one of float, go, richards,
json_dumps, nbody. Each loop is one call of what the benchmark's runner times per loop
(pyperf's bench_func calls it once per loop; nbody's bench_time_func takes the loop count).
LOOPS 0 imports the benchmark and builds its inputs only: the fixed part of a run.
"""

import importlib.util
import os
import sys


def load(benchmarks, name):
    path = os.path.join(benchmarks, "bm_" + name, "run_benchmark.py")
    spec = importlib.util.spec_from_file_location("bm_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is not "__main__": no pyperf runner
    return module


def main():
    benchmarks, name, loops = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bm = load(benchmarks, name)
    if name == "float":
        for _ in range(loops):
            bm.benchmark(bm.POINTS)
    elif name == "go":
        for _ in range(loops):
            bm.versus_cpu()
    elif name == "richards":
        richards = bm.Richards()
        for _ in range(loops):
            richards.run(1)
    elif name == "json_dumps":
        # As the script's main() with every case.
        data = [(getattr(bm, case)[0], range(getattr(bm, case)[1])) for case in bm.CASES]
        for _ in range(loops):
            bm.bench_json_dumps(data)
    elif name == "nbody":
        if loops:
            bm.bench_nbody(loops, bm.DEFAULT_REFERENCE, bm.DEFAULT_ITERATIONS)
    else:
        sys.exit("unknown benchmark: " + name)


if __name__ == "__main__":
    main()
