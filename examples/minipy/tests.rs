//! Tests of the object model, the dict's semantics and storage, the free lists, and the
//! refcount balance of every workload in every memory mode (mimalloc's with its feature).

use pyalloc::{Heap, HeapConfig};

use crate::model::{
    float_repr, DictStorage, FreeListSnapshot, Kind, Memory, Obj, PyDictObject, PyFloatObject,
    PyListObject, Runtime, TUPLE_MAXFREELIST, TUPLE_MAXSAVESIZE,
};
use crate::workloads::{float, json_dumps, nqueens, richards};

/// The three memory configurations: pyalloc with free lists, without, and the system
/// allocator (`None` heap).
fn heaps() -> [Option<Heap>; 3] {
    [
        Some(Heap::new()),
        Some(Heap::with_config(HeapConfig::new().free_lists(false)).unwrap()),
        None,
    ]
}

fn memory(heap: &Option<Heap>) -> Memory<'_> {
    heap.as_ref().map_or(Memory::System, Memory::Pyalloc)
}

/// Runs `f` on a fresh runtime in each mode (mimalloc too, with its feature); on the heaps,
/// checks that every block comes back (after `clear_free_lists`) both while the runtime lives
/// and after it is dropped, and that the heap's invariants hold.
fn in_every_mode(f: impl for<'r> Fn(&'r Runtime<'r>)) {
    #[cfg(feature = "mimalloc")]
    f(&Runtime::new(Memory::Mimalloc));
    for heap in heaps() {
        {
            let rt = Runtime::new(memory(&heap));
            let start = heap.as_ref().map(|h| {
                h.clear_free_lists();
                h.stats().blocks_in_use()
            });
            f(&rt);
            if let Some(h) = &heap {
                h.clear_free_lists();
                let stats = h.stats();
                assert_eq!(Some(stats.blocks_in_use()), start, "objects leaked");
                assert_eq!(stats.large_allocations(), 0, "large blocks leaked");
                h.check().unwrap();
            }
        }
        if let Some(h) = &heap {
            h.clear_free_lists();
            assert_eq!(
                h.stats().blocks_in_use(),
                0,
                "the runtime's singletons leaked"
            );
            h.check().unwrap();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Objects and reference counts

#[test]
fn small_ints_and_singletons_are_shared() {
    in_every_mode(|rt| {
        assert!(rt.int(-5).is(&rt.int(-5)));
        assert!(rt.int(256).is(&rt.int(256)));
        assert!(!rt.int(257).is(&rt.int(257)));
        assert!(!rt.int(-6).is(&rt.int(-6)));
        assert_eq!(rt.int(257), rt.int(257));
        assert!(rt.none().is(&rt.none()));
        assert!(rt.bool(true).is(&rt.bool(true)));
        assert!(rt.tuple(&[]).is(&rt.tuple_from(core::iter::empty())));
        assert_eq!(rt.none().kind(), Kind::None);
        assert!(!rt.none().truthy() && !rt.int(0).truthy() && rt.int(3).truthy());
    });
}

#[test]
fn reference_counts_follow_clones_and_containers() {
    in_every_mode(|rt| {
        let x = rt.float(1.5);
        assert_eq!(x.refcount(), 1);
        let y = x.clone();
        assert_eq!(x.refcount(), 2);
        drop(y);
        assert_eq!(x.refcount(), 1);
        let l = rt.list();
        l.append(&x);
        l.append(&x);
        assert_eq!(x.refcount(), 3);
        let t = rt.tuple(&[&x, &l]);
        assert_eq!((x.refcount(), l.refcount()), (4, 2));
        l.set_at(0, &rt.none());
        assert_eq!(x.refcount(), 3);
        drop(l);
        assert_eq!(x.refcount(), 3, "the tuple still holds the list");
        drop(t);
        assert_eq!(x.refcount(), 1);
        let d = rt.dict();
        d.set(&rt.str("k"), &x);
        d.set(&rt.str("k"), &x); // overwrite with the same value: no net change
        assert_eq!(x.refcount(), 2);
        assert!(d.del(&rt.str("k")));
        assert_eq!(x.refcount(), 1);
    });
}

#[test]
fn numbers_behave_like_python() {
    in_every_mode(|rt| {
        let (a, b) = (rt.int(-7), rt.int(2));
        assert_eq!((&a + &b).int(), -5);
        assert_eq!((&a * &b).int(), -14);
        assert_eq!(a.floordiv(&b).int(), -4);
        assert_eq!(rt.int(7).floordiv(&rt.int(-2)).int(), -4);
        assert_eq!(rt.float(-7.5).floordiv(&b).float(), -4.0);
        assert_eq!((&a / &b).float(), -3.5);
        assert_eq!((&a / &b).kind(), Kind::Float);
        assert_eq!((&rt.int(6) ^ &rt.int(3)).int(), 5);
        assert_eq!((&rt.int(6) & &rt.int(3)).int(), 2);
        assert_eq!((-&a).int(), 7);
        assert_eq!(rt.int(1), rt.float(1.0));
        assert_eq!(rt.bool(true), rt.int(1));
        assert_ne!(rt.int(1), rt.float(1.5));
        assert_ne!(rt.int(i64::MAX), rt.float(9_223_372_036_854_775_808.0));
        assert!(rt.int(1).lt(&rt.float(1.5)) && rt.float(2.5).gt(&rt.int(2)));
        assert!(rt.float(f64::NAN) != rt.float(f64::NAN));
        assert_eq!((&rt.int(1) + &rt.float(0.5)).float(), 1.5);
    });
}

#[test]
fn hashes_match_cpython() {
    in_every_mode(|rt| {
        // Values printed by CPython 3.11.
        assert_eq!(rt.int(-1).py_hash(), -2);
        assert_eq!(rt.int(1 << 61).py_hash(), 1);
        assert_eq!(rt.float(1.5).py_hash(), 1_152_921_504_606_846_977);
        assert_eq!(rt.float(-2.25).py_hash(), -576_460_752_303_423_490);
        assert_eq!(rt.float(1e300).py_hash(), 1_224_995_262_755_759_164);
        assert_eq!(rt.float(0.1).py_hash(), 230_584_300_921_369_408);
        assert_eq!(rt.float(3.0).py_hash(), rt.int(3).py_hash());
        assert_eq!(
            rt.tuple(&[&rt.int(1), &rt.int(2)]).py_hash(),
            -3_550_055_125_485_641_917
        );
        assert_eq!(rt.tuple(&[]).py_hash(), 5_740_354_900_026_072_187);
        let s = rt.str("spam");
        assert_eq!(s.py_hash(), rt.str_concat(&["sp", "am"]).py_hash());
    });
}

#[test]
#[should_panic(expected = "unhashable type: 'list'")]
fn lists_are_unhashable() {
    let rt = Runtime::new(Memory::System);
    let d = rt.dict();
    d.set(&rt.list(), &rt.none());
}

#[test]
#[should_panic(expected = "another runtime")]
fn objects_cannot_cross_runtimes() {
    let heap = Heap::new();
    let a = Runtime::new(Memory::Pyalloc(&heap));
    let b = Runtime::new(Memory::System);
    let list = a.list();
    list.append(&b.float(1.0));
}

#[test]
#[should_panic(expected = "another runtime")]
fn concatenation_cannot_cross_runtimes() {
    let a = Runtime::new(Memory::System);
    let b = Runtime::new(Memory::System);
    let _ = &a.list() + &b.list_from([b.float(1.0)]);
}

#[test]
fn strings_concatenate_join_and_compare() {
    in_every_mode(|rt| {
        let s = &rt.str("py") + &rt.str("alloc");
        assert_eq!(s.as_str(), Some("pyalloc"));
        assert_eq!(s.len(), 7);
        assert_eq!(s, rt.str("pyalloc"));
        assert!(rt.str("abc").lt(&rt.str("abd")));
        let parts = rt.list_from(["a", "bc", "", "ąć"].map(|p| rt.str(p)));
        assert_eq!(rt.join(", ", &parts).as_str(), Some("a, bc, , ąć"));
        assert_eq!(rt.join("", &rt.list()).as_str(), Some(""));
        assert_eq!(s.repr(), "'pyalloc'");
        let long = "x".repeat(2000); // past the small-request threshold: a large block
        assert_eq!(rt.str(&long).len(), 2000);
    });
}

#[test]
fn tuples_index_slice_and_concatenate() {
    in_every_mode(|rt| {
        let t = rt.tuple_from((0..5).map(|i| rt.int(i)));
        assert_eq!(t.len(), 5);
        assert_eq!(t.at(-1).int(), 4);
        assert_eq!(t.slice(1, 3).repr(), "(1, 2)");
        assert_eq!(t.slice(4, 2).repr(), "()");
        assert_eq!(t.slice(-2, 100).repr(), "(3, 4)");
        assert_eq!((&t + &t).len(), 10);
        assert_eq!(rt.tuple(&[&rt.int(1)]).repr(), "(1,)");
        let big = rt.tuple_from((0..100).map(|i| rt.int(i))); // beyond the free lists
        assert_eq!(big.at(99).int(), 99);
        assert_eq!(t, rt.tuple_from(t.iter()));
        assert!(t.lt(&rt.tuple(&[&rt.int(0), &rt.int(2)])));
    });
}

#[test]
fn lists_grow_shrink_and_splice() {
    in_every_mode(|rt| {
        let l = rt.list();
        for i in 0..1000 {
            l.append(&rt.int(i));
        }
        assert_eq!(l.len(), 1000);
        assert_eq!(l.at(-1).int(), 999);
        for _ in 0..990 {
            l.pop();
        }
        assert_eq!(l.repr(), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]");
        // indices[i:] = indices[i + 1:] + indices[i:i + 1]
        let rotated = &l.slice(3, isize::MAX) + &l.slice(2, 3);
        l.set_slice(2, isize::MAX, &rotated);
        assert_eq!(l.repr(), "[0, 1, 3, 4, 5, 6, 7, 8, 9, 2]");
        l.set_slice(1, 9, &rt.tuple(&[]));
        assert_eq!(l.repr(), "[0, 2]");
        l.extend(&l);
        assert_eq!(l.repr(), "[0, 2, 0, 2]");
        l.set_slice(0, 0, &rt.list_repeat(&rt.str("x"), 2));
        assert_eq!(l.repr(), "['x', 'x', 0, 2, 0, 2]");
        let sum: i64 = l.slice(2, 6).iter().map(|o| o.int()).sum();
        assert_eq!(sum, 4);
        assert_eq!(l, l.slice(0, isize::MAX));
    });
}

#[test]
fn float_repr_matches_python() {
    let cases = [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-0.0, "-0.0"),
        (1.5e-7, "1.5e-07"),
        (1e22, "1e+22"),
        (123.456, "123.456"),
        (-1234.5678e10, "-12345678000000.0"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
    ];
    for (v, want) in cases {
        assert_eq!(float_repr(v), want, "repr({v:e})");
    }
}

#[test]
fn deep_nesting_is_freed_without_recursion() {
    in_every_mode(|rt| {
        let mut outer = rt.list();
        for _ in 0..200_000 {
            let next = rt.list();
            next.append(&outer);
            outer = next;
        }
        let d = rt.dict();
        d.set(&rt.str("chain"), &outer);
        drop(outer);
        drop(d); // 200,000 nested lists, freed through the trashcan
    });
}

// ------------------------------------------------------------------------------------------
// Free lists

#[test]
fn free_lists_reuse_slots_lifo_and_respect_capacities() {
    let heap = Heap::new();
    let rt = Runtime::new(Memory::Pyalloc(&heap));
    let before = FreeListSnapshot::of(&heap);
    let a = rt.float(1.0);
    let id = a.id();
    drop(a);
    let b = rt.float(2.0);
    assert_eq!(b.id(), id, "the freed float's slot comes back first");
    drop(b);
    let many: Vec<Obj<'_>> = (0..1000).map(|i| rt.float(i as f64)).collect();
    drop(many);
    let s = heap.free_list_stats::<PyFloatObject>();
    assert_eq!((s.len, s.capacity), (100, 100));
    let delta = FreeListSnapshot::of(&heap).since(&before);
    assert_eq!(delta.float.overflows, 900);

    let lists: Vec<Obj<'_>> = (0..200).map(|_| rt.list()).collect();
    let dicts: Vec<Obj<'_>> = (0..200).map(|_| rt.dict()).collect();
    drop((lists, dicts));
    assert_eq!(heap.free_list_stats::<PyListObject>().len, 80);
    assert_eq!(heap.free_list_stats::<PyDictObject>().len, 80);

    let pairs: Vec<Obj<'_>> = (0..3000)
        .map(|i| rt.tuple(&[&rt.int(i), &rt.int(i)]))
        .collect();
    drop(pairs);
    let t = FreeListSnapshot::of(&heap).tuple;
    assert_eq!(t.len, TUPLE_MAXFREELIST, "one list per length, 2000 each");
    assert_eq!(t.overflows, 1000);
    let n = TUPLE_MAXSAVESIZE as i64;
    let t1 = rt.tuple(&[&rt.int(1)]);
    let t20 = rt.tuple_from((0..n).map(|i| rt.int(i)));
    let t21 = rt.tuple_from((0..n + 1).map(|i| rt.int(i))); // no free list past 20
    drop((t1, t20, t21));
    let t = FreeListSnapshot::of(&heap).tuple;
    assert_eq!(t.len, TUPLE_MAXFREELIST + 2);
    assert_eq!(
        t.capacity,
        TUPLE_MAXSAVESIZE * TUPLE_MAXFREELIST,
        "every length's list reports its declared capacity, used or not"
    );
    drop(rt);
    heap.clear_free_lists();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn free_lists_off_never_hit() {
    let heap = Heap::with_config(HeapConfig::new().free_lists(false)).unwrap();
    let rt = Runtime::new(Memory::Pyalloc(&heap));
    for i in 0..100 {
        drop(rt.float(i as f64));
        drop(rt.tuple(&[&rt.int(i)]));
        drop(rt.list());
    }
    let s = FreeListSnapshot::of(&heap);
    for (name, stats) in s.named() {
        assert_eq!((stats.hits, stats.len, stats.capacity), (0, 0, 0), "{name}");
    }
    assert_eq!(s.float.misses, 100);
}

// ------------------------------------------------------------------------------------------
// Dict semantics and storage

#[test]
fn dict_insert_overwrite_delete_lookup_and_order() {
    in_every_mode(|rt| {
        let d = rt.dict();
        assert_eq!(
            d.dict_storage().slots,
            0,
            "no table before the first insertion"
        );
        let k = |s: &str| rt.str(s);
        d.set(&k("a"), &rt.int(1));
        d.set(&k("b"), &rt.int(2));
        d.set(&k("c"), &rt.int(3));
        assert_eq!(d.repr(), "{'a': 1, 'b': 2, 'c': 3}");
        d.set(&k("a"), &rt.int(10)); // overwrite keeps the position
        assert_eq!(d.repr(), "{'a': 10, 'b': 2, 'c': 3}");
        assert!(d.del(&k("b")));
        assert!(!d.del(&k("b")));
        assert_eq!(d.get(&k("b")), None);
        d.set(&k("b"), &rt.int(20)); // re-inserted at the end
        assert_eq!(d.repr(), "{'a': 10, 'c': 3, 'b': 20}");
        assert_eq!(d.len(), 3);
        assert_eq!(d.getitem(&k("c")).int(), 3);
        assert!(d.contains(&k("a")) && !d.contains(&k("z")));
        // Keys compare by value: 1, 1.0 and True are one key; tuples hash by content.
        d.set(&rt.int(1), &k("int"));
        d.set(&rt.float(1.0), &k("float"));
        d.set(&rt.bool(true), &k("bool"));
        assert_eq!(d.getitem(&rt.int(1)).as_str(), Some("bool"));
        let key = rt.tuple(&[&rt.int(1), &k("x")]);
        d.set(&key, &rt.none());
        assert!(d.contains(&rt.tuple(&[&rt.int(1), &k("x")])));
        let keys: Vec<String> = d.items().map(|(k, _)| k.repr()).collect();
        assert_eq!(keys, ["'a'", "'c'", "'b'", "1", "(1, 'x')"]);
        let copy = rt.dict();
        for (k, v) in d.items() {
            copy.set(&k, &v);
        }
        assert_eq!(copy, d);
        copy.set(&rt.int(1), &rt.int(0));
        assert_ne!(copy, d);
        d.clear();
        assert_eq!((d.len(), d.dict_storage().slots), (0, 0));
    });
}

#[test]
fn dict_grows_through_index_widths_and_shrinks_after_deletions() {
    in_every_mode(|rt| {
        let d = rt.dict();
        let mut seen = Vec::new();
        for i in 0..1000 {
            d.set(&rt.int(i), &rt.int(i * i));
            let s = d.dict_storage();
            if seen.last() != Some(&s.slots) {
                seen.push(s.slots);
            }
            assert_eq!(s.entry_capacity, s.slots * 2 / 3, "USABLE_FRACTION");
        }
        // CPython's growth: to the smallest power of two >= 3 × used.
        assert_eq!(seen, [8, 16, 32, 64, 128, 256, 512, 1024, 2048]);
        assert_eq!(d.dict_storage().index_width, 2);
        for i in 0..1000 {
            assert_eq!(d.getitem(&rt.int(i)).int(), i * i);
        }
        // Deletions leave holes and keep the table...
        for i in 0..990 {
            assert!(d.del(&rt.int(i)));
        }
        let full: DictStorage = d.dict_storage();
        assert_eq!((full.slots, full.entries), (2048, 1000));
        // ...until an insertion finds the entry array full: then it is compacted and the
        // table shrinks to fit the 10 live entries.
        let mut i = 1000;
        while d.dict_storage().slots == 2048 {
            d.set(&rt.int(i), &rt.none());
            d.del(&rt.int(i));
            i += 1;
        }
        let small = d.dict_storage();
        assert_eq!(small.slots, 32);
        assert_eq!(small.index_width, 1);
        assert_eq!(small.entry_capacity, 21);
        let keys: Vec<i64> = d.items().map(|(k, _)| k.int()).collect();
        assert_eq!(
            keys,
            (990..1000).collect::<Vec<_>>(),
            "order survives the shrink"
        );
    });
}

#[test]
fn dict_matches_a_reference_model() {
    // A deterministic random walk of inserts, overwrites and deletes over 300 keys, checked
    // against a plain ordered map after every step.
    in_every_mode(|rt| {
        let d = rt.dict();
        let mut model: Vec<(i64, i64)> = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 300) as i64;
            let k = if key % 3 == 0 {
                rt.str(&format!("k{key}"))
            } else {
                rt.int(key * 1_000_003)
            };
            if x % 5 < 3 {
                d.set(&k, &rt.int(step));
                match model.iter_mut().find(|(m, _)| *m == key) {
                    Some(entry) => entry.1 = step,
                    None => model.push((key, step)),
                }
            } else {
                let present = model.iter().position(|(m, _)| *m == key);
                assert_eq!(d.del(&k), present.is_some());
                if let Some(p) = present {
                    model.remove(p);
                }
            }
            assert_eq!(d.len(), model.len());
        }
        let got: Vec<i64> = d.items().map(|(_, v)| v.int()).collect();
        let want: Vec<i64> = model.iter().map(|&(_, v)| v).collect();
        assert_eq!(got, want);
    });
}

#[test]
#[should_panic(expected = "dictionary changed size during iteration")]
fn dict_iteration_detects_changes() {
    let rt = Runtime::new(Memory::System);
    let d = rt.dict();
    d.set(&rt.int(1), &rt.int(1));
    d.set(&rt.int(2), &rt.int(2));
    for (k, _) in d.items() {
        d.set(&(&k + &rt.int(10)), &rt.none());
    }
}

// ------------------------------------------------------------------------------------------
// Workloads: known answers, and every block back afterwards

#[test]
fn nqueens_finds_92_solutions_and_frees_everything() {
    in_every_mode(|rt| {
        assert_eq!(nqueens::n_queens(rt, 6).len(), 4);
        let solutions = nqueens::n_queens(rt, nqueens::QUEENS);
        nqueens::check(rt, &solutions).unwrap();
    });
}

#[test]
fn json_dumps_matches_cpython_and_frees_everything() {
    in_every_mode(|rt| {
        json_dumps::run(rt, 1).unwrap();
        let bump = bumpalo::Bump::new();
        let tree = json_dumps::parse(
            &bump,
            r#"[1, -2, 2.5, "a\"\u00e9\ud83d\ude00", {}, [], null]"#,
        )
        .unwrap();
        let obj = json_dumps::build(rt, &tree);
        let out = json_dumps::Encoder::new(rt).dumps(&obj);
        assert_eq!(
            out.as_str(),
            Some(r#"[1, -2, 2.5, "a\"\u00e9\ud83d\ude00", {}, [], null]"#)
        );
    });
}

#[test]
fn json_dumps_detects_cycles() {
    in_every_mode(|rt| {
        let l = rt.list();
        l.append(&l); // a reference cycle: refcounting alone never frees it
        let encoder = json_dumps::Encoder::new(rt);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| encoder.dumps(&l)))
            .expect_err("a cycle cannot be encoded");
        let msg = match err.downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => err.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        assert!(msg.contains("Circular reference detected"), "{msg}");
        assert_eq!(l.repr(), "[[...]]");
        l.set_at(0, &rt.none()); // break the cycle, as the GC would
    });
}

#[test]
fn float_matches_cpython_and_frees_everything() {
    in_every_mode(|rt| {
        for points in [100, 1000] {
            let xyz = float::benchmark(rt, points);
            float::check(points, &xyz).unwrap();
        }
    });
}

#[test]
fn float_workload_lives_on_the_float_free_list() {
    let heap = Heap::new();
    let rt = Runtime::new(Memory::Pyalloc(&heap));
    let before = FreeListSnapshot::of(&heap);
    drop(float::benchmark(&rt, 1000));
    let s = FreeListSnapshot::of(&heap).since(&before).float;
    assert!(
        s.hits * 2 > s.hits + s.misses,
        "float hit rate too low: {s:?}"
    );
}

#[test]
fn richards_counts_match_and_frees_everything() {
    in_every_mode(|rt| {
        richards::run(rt, 2).unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// The command line

/// Parses `line` (split at spaces) as minipy's arguments.
fn parse(line: &str) -> Result<crate::Command, String> {
    crate::parse_args(line.split_whitespace().map(std::ffi::OsString::from))
}

/// The request `line` makes; panics when it is not one.
fn request(line: &str) -> crate::Request {
    match parse(line) {
        Ok(crate::Command::Run(r)) => r,
        other => panic!("{line:?} gave {other:?}"),
    }
}

#[test]
fn command_line_parses() {
    let r = request("");
    assert_eq!(r.workloads.len(), 4);
    if cfg!(feature = "mimalloc") {
        assert_eq!((r.modes.len(), r.skipped.len()), (4, 0));
    } else {
        // A run of every mode leaves out the one this build lacks, and says so (main prints
        // the reason of each skipped mode).
        assert_eq!(r.modes.len(), 3);
        assert_eq!(r.skipped, [crate::Mode::Mimalloc]);
    }
    assert_eq!((r.size, r.runs), (None, crate::DEFAULT_RUNS));

    let r = request("float --mode system --size 3");
    assert_eq!(r.workloads[0].name, "float");
    assert_eq!((r.modes, r.size), (vec![crate::Mode::System], Some(3)));

    // Options before the workload, `=` values, short options, several workloads and modes.
    let r = request("--runs=2 -s 1 nqueens -m pyalloc richards --mode=system");
    let names: Vec<&str> = r.workloads.iter().map(|w| w.name).collect();
    assert_eq!(names, ["nqueens", "richards"]);
    assert_eq!(r.modes, [crate::Mode::Pyalloc, crate::Mode::System]);
    assert_eq!((r.size, r.runs), (Some(1), 2));

    // --size alone applies to every workload.
    let r = request("--size 2");
    assert_eq!((r.workloads.len(), r.size), (4, Some(2)));
}

#[test]
fn command_line_help_and_errors() {
    for line in ["--help", "-h", "nqueens --help", "--size 2 -h"] {
        assert!(matches!(parse(line), Ok(crate::Command::Help)), "{line}");
    }
    assert!(crate::usage().contains("--runs"));
    let err = |line: &str| parse(line).expect_err(line);
    assert!(err("nope").contains("unknown workload \"nope\""));
    assert!(err("float --mode fast").contains("unknown mode \"fast\""));
    assert!(err("float --size 0").contains("--size wants a positive integer, not \"0\""));
    assert!(err("float --size many").contains("--size wants a positive integer"));
    assert!(err("float --runs -1").contains("--runs wants a positive integer"));
    assert!(err("float --size").contains("--size"));
    assert!(err("--frobnicate").contains("--frobnicate"));
}

#[test]
fn mode_mimalloc_needs_its_feature() {
    let asked = parse("float --mode mimalloc");
    if cfg!(feature = "mimalloc") {
        let Ok(crate::Command::Run(r)) = asked else {
            panic!("{asked:?}")
        };
        assert_eq!(r.modes, [crate::Mode::Mimalloc]);
        assert!(crate::Mode::Mimalloc.unavailable_reason().is_none());
    } else {
        let e = asked.expect_err("mode mimalloc without its feature");
        assert!(e.contains("`mimalloc` feature"), "{e}");
        assert!(
            e.contains("cargo run --release -p minipy --features mimalloc -- --mode mimalloc"),
            "{e}"
        );
        let skip = crate::Mode::Mimalloc.unavailable_reason().unwrap();
        assert_eq!(skip.lines().count(), 1, "{skip}");
    }
    for mode in [
        crate::Mode::Pyalloc,
        crate::Mode::NoFreeList,
        crate::Mode::System,
    ] {
        assert!(mode.unavailable_reason().is_none());
    }
}

/// Every workload at size 1 in modes system and mimalloc, through the same runs and checks as
/// the command line's: known answers, runs and modes agreeing, no failure.
#[cfg(feature = "mimalloc")]
#[test]
fn mode_mimalloc_agrees_with_system() {
    let request = crate::Request {
        workloads: crate::workloads::WORKLOADS.iter().collect(),
        modes: vec![crate::Mode::System, crate::Mode::Mimalloc],
        skipped: Vec::new(),
        size: Some(1),
        runs: 1,
    };
    let mut failures = Vec::new();
    for w in &request.workloads {
        let row = crate::run_workload(w, &request, &mut failures);
        failures.extend(row.failures());
        let answers: Vec<&Result<String, String>> = row
            .modes
            .iter()
            .flat_map(|(_, runs)| runs.iter().map(|r| &r.result))
            .collect();
        assert_eq!(answers.len(), 2, "{}", w.name);
        assert!(answers[0].is_ok(), "{}: {:?}", w.name, answers[0]);
        assert_eq!(answers[0], answers[1], "{}", w.name);
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The float workload frees a million floats at random; the slots its free lists keep must not
/// pin the heap's arenas (12 of them stayed, before idle lists were shut), and the default
/// decay gives the rest back once its delay has passed, on the next slow path, with no call.
#[test]
fn after_the_float_workload_the_heap_shrinks_to_two_arenas_without_being_asked() {
    use pyalloc::{Allocator, ManualClock, MmapSource, DEFAULT_DECAY};
    use std::alloc::Layout;
    let clock = ManualClock::new();
    let heap = Heap::with_source(HeapConfig::new(), clock.drive(MmapSource::new())).unwrap();
    {
        let rt = Runtime::new(Memory::Pyalloc(&heap));
        for _ in 0..3 {
            drop(float::benchmark(&rt, 100_000));
        }
    }
    let peak = heap.stats().arenas_highwater();
    assert!(peak >= 10, "{peak} arenas at the peak");
    clock.advance(DEFAULT_DECAY * 2);
    // Any slow path settles what is due: here a request for the system allocator.
    let large = Layout::from_size_align(1024, 8).unwrap();
    let block = heap.allocate(large).unwrap();
    // SAFETY: allocated just above with `large`.
    unsafe { heap.deallocate(block.cast(), large) };
    heap.check().unwrap();
    let stats = heap.stats();
    assert!(
        stats.arenas_current() <= 2,
        "{} arenas of {peak} left:\n{stats}",
        stats.arenas_current()
    );
}
