#!/usr/bin/env bash
# pyalloc under real programs: libpyalloc_malloc.so (pyalloc-malloc) by LD_PRELOAD.
#
# 1. the C tests of pyalloc-malloc (semantics against glibc's, threads freeing each other's
#    blocks, fork while threads allocate), on the release library;
# 2. CPython's test_dict and test_json with PYTHONMALLOC=malloc (every object through malloc);
# 3. sqlite3: a generated database of 100,000 rows, queries, a dump: same bytes as without;
# 4. git: log, status, fsck, gc --aggressive on a clone of this repository: same answers.
#
# Each program's run under the preload must print PYALLOC_MALLOC_STATS's line (CPython's test
# run aside, see below), so a preload that silently did nothing fails. About a minute on the shared 2-core machine once built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n---- preload: %s (%ss)\n' "$*" "$SECONDS"; }

step "build the library and run its tests (release)"
cargo build --release --locked -p pyalloc-malloc
cargo test --release --locked -p pyalloc-malloc
lib=$PWD/target/release/libpyalloc_malloc.so

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs "$@" under the preload with the report at exit on, and checks that the report came
# (the report is the last thing on stderr, which is shown after the program ends).
on_pyalloc() {
    local log status=0
    log=$(mktemp "$work/stderr.XXXXXX")
    LD_PRELOAD=$lib PYALLOC_MALLOC_STATS=1 "$@" 2> "$log" || status=$?
    cat "$log" >&2
    [ "$status" -eq 0 ] || { echo "failed under the preload ($status): $*" >&2; exit 1; }
    grep -q '^pyalloc-malloc: heaps ' "$log" || { echo "no report: not preloaded? $*" >&2; exit 1; }
}

step "python: test_dict test_json with PYTHONMALLOC=malloc"
python=$(python3 -c 'import sys; print(sys.executable)')
# The report at exit is off for the test run: CPython's tests run child interpreters and
# expect their stderr empty. The run before shows this interpreter under the preload.
PYTHONMALLOC=malloc on_pyalloc "$python" -c 'import json; json.loads(json.dumps([{}] * 1000))'
LD_PRELOAD=$lib PYTHONMALLOC=malloc "$python" -m test test_dict test_json

step "sqlite3: 100,000 generated rows, same answers with and without"
bench=pyalloc-malloc/bench
for mode in plain pyalloc; do
    run=(); [ "$mode" = pyalloc ] && run=(on_pyalloc)
    "${run[@]}" sqlite3 "$work/$mode.db" < $bench/sqlite-make.sql
    "${run[@]}" sqlite3 "$work/$mode.db" < $bench/sqlite-query.sql > "$work/$mode.query"
    "${run[@]}" sqlite3 "$work/$mode.db" .dump | sha256sum > "$work/$mode.dump"
done
cmp "$work/plain.query" "$work/pyalloc.query"
cmp "$work/plain.dump" "$work/pyalloc.dump"
echo "sqlite3: $(wc -l < "$work/plain.query") lines of answers and the dumps identical"

step "git: log, status, fsck, gc --aggressive on a clone of this repository"
for mode in plain pyalloc; do
    run=(); [ "$mode" = pyalloc ] && run=(on_pyalloc)
    git clone --quiet --no-local . "$work/$mode"
    (
        cd "$work/$mode"
        "${run[@]}" git log --stat --format='%H %T %an %s' > ../"$mode.log"
        "${run[@]}" git status --porcelain=v2 --branch > ../"$mode.status"
        "${run[@]}" git fsck --full --strict | sort > ../"$mode.fsck"
        "${run[@]}" git gc --aggressive --quiet
        "${run[@]}" git fsck --full --strict | sort >> ../"$mode.fsck"
        "${run[@]}" git cat-file --batch-all-objects --batch-check | sort > ../"$mode.objects"
    )
done
for what in log status fsck objects; do
    cmp "$work/plain.$what" "$work/pyalloc.$what"
done
echo "git: $(wc -l < "$work/plain.objects") objects, the same log, status, fsck and objects"

step "preload: done"
