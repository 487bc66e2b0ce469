"""Sums the inclusive instructions (Ir) and the calls of CPython's OBJ-domain entry points in a
callgrind output file: PyObject_Malloc, PyObject_Calloc, PyObject_Realloc, PyObject_Free.

    python3 obj_domain_sum.py callgrind.out.N [...]
    python3 obj_domain_sum.py --total callgrind.out.N

Prints, per file, a line per function (calls, inclusive Ir, Ir per call) and their total; with
`--total`, only the total's calls and Ir, as two numbers (for obj-domain.sh's table).
The inclusive cost of a function is the sum of the costs callgrind records on the calls to it
(the `calls=` lines and the cost line after each), which is what `callgrind_annotate
--inclusive=yes` reports for it when, as here, it does not call itself. The tail calls the
wrappers make through the domain's function pointer (a `jmp`, in both builds) are counted as
calls by callgrind, so the allocator behind them is inside the wrappers' inclusive cost.
"""

import re
import sys

ENTRY_POINTS = ("PyObject_Malloc", "PyObject_Calloc", "PyObject_Realloc", "PyObject_Free")
NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    names = {}  # compressed function id -> name
    calls = dict.fromkeys(ENTRY_POINTS, 0)
    cost = dict.fromkeys(ENTRY_POINTS, 0)
    events = None
    pending = None  # the entry point a `calls=` line named, whose cost line follows
    callee = None

    def name_of(spec):
        m = NAMED.match(spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if pending is not None:
                fields = line.split()
                cost[pending] += int(fields[1 + events.index("Ir")])
                pending = None
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("fn="):
                name_of(line[3:])
                callee = None
            elif line.startswith("cfn="):
                callee = name_of(line[4:])
            elif line.startswith("calls="):
                if callee in calls:
                    calls[callee] += int(line[6:].split()[0])
                    pending = callee
    return calls, cost


def main():
    if sys.argv[1:2] == ["--total"]:
        calls, cost = parse(sys.argv[2])
        print(sum(calls.values()), sum(cost.values()))
        return
    for path in sys.argv[1:]:
        calls, cost = parse(path)
        print(path)
        for fn in ENTRY_POINTS:
            per = cost[fn] / calls[fn] if calls[fn] else 0.0
            print(f"  {fn:18} calls {calls[fn]:>12,}  Ir {cost[fn]:>14,}  Ir/call {per:6.2f}")
        total_calls, total_cost = sum(calls.values()), sum(cost.values())
        per = total_cost / total_calls if total_calls else 0.0
        print(f"  {'total':18} calls {total_calls:>12,}  Ir {total_cost:>14,}  Ir/call {per:6.2f}")


if __name__ == "__main__":
    main()
