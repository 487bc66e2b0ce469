//! `Global`'s debug mode, reached with `PYALLOC_DEBUG=1` as CPython's with
//! `PYTHONMALLOC=debug`. The variable is read once, at the process's first allocation, so each
//! case runs in a child process (this binary again, one ignored test selected) started with the
//! variable set; the parent checks how the child ended and what it printed.

// This binary installs `Global` itself: not with the facade's `test-global-allocator`.
#![cfg(not(feature = "test-global-allocator"))]

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::thread;

use pyalloc::{FreeListed, Global, PoolBox};

#[global_allocator]
static GLOBAL: Global = Global;

/// Runs ignored test `name` of this binary in a child with `PYALLOC_DEBUG=1`.
fn child(name: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            name,
        ])
        .env("PYALLOC_DEBUG", "1")
        .output()
        .unwrap()
}

#[derive(FreeListed, Debug, PartialEq)]
struct Point(f64, f64);

#[test]
#[ignore = "run by debug_mode_serves_a_threaded_program, with PYALLOC_DEBUG=1"]
fn child_threaded_program() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut v: Vec<String> = (0..300).map(|i| format!("{t}:{i}")).collect();
                v.retain(|s| s.len() % 2 == 0);
                let boxes: Vec<_> = (0..50)
                    .map(|i| PoolBox::new(Point(i as f64, 0.5)))
                    .collect();
                (v, boxes)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        // Freed here, on another thread than their allocation: checked all the same.
        let (v, boxes) = h.join().unwrap();
        total += v.len() + boxes.len();
    }
    assert!(total > 200);
    let big = vec![7u8; 100_000]; // large blocks go through the debug heap too
    assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 700_000);
    Global::check().unwrap();
    println!("child done: {total}");
}

#[test]
fn debug_mode_serves_a_threaded_program() {
    let out = child("child_threaded_program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("child done"), "{stdout}");
}

#[test]
#[ignore = "run by a_double_free_aborts_with_its_name, with PYALLOC_DEBUG=1"]
fn child_double_free() {
    let layout = Layout::new::<[u8; 24]>();
    // SAFETY: none: the second free is the misuse under test.
    unsafe {
        let block = GLOBAL.alloc(layout);
        GLOBAL.dealloc(block, layout);
        GLOBAL.dealloc(block, layout);
    }
}

#[test]
fn a_double_free_aborts_with_its_name() {
    let out = child("child_double_free");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child went on: {out:?}");
    assert!(stderr.contains("pyalloc debug: double free"), "{stderr}");
}

#[test]
#[ignore = "run by an_overrun_aborts_with_its_name, with PYALLOC_DEBUG=1"]
fn child_overrun() {
    let layout = Layout::new::<[u8; 24]>();
    // SAFETY: none: the write past the end is the misuse under test.
    unsafe {
        let block = GLOBAL.alloc(layout);
        block.add(24).write(0);
        GLOBAL.dealloc(block, layout);
    }
}

#[test]
fn an_overrun_aborts_with_its_name() {
    let out = child("child_overrun");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child went on: {out:?}");
    assert!(stderr.contains("pyalloc debug: buffer overrun"), "{stderr}");
}

#[test]
fn without_the_variable_the_fast_path_serves() {
    // This process was started without PYALLOC_DEBUG (the test runner's environment).
    if std::env::var_os("PYALLOC_DEBUG").is_some() {
        return;
    }
    let b = Box::new(5u64);
    assert_eq!(*b, 5);
    assert!(
        Global::stats().blocks_in_use() > 0,
        "a thread heap, not the debug heap"
    );
}
