//! libpyalloc_malloc.so under real C programs: each test compiles a program from `tests/c/`
//! with the C compiler on `PATH` (`cc`, or `$CC`) and runs it as a child process with
//! `LD_PRELOAD` set to the library cargo built for this very test run (it is this package's
//! library target, built before its integration tests, next to the `deps/` directory that
//! holds this test binary).
//!
//! Nothing is loaded into this process: the library replaces `malloc` for whole processes only.
//! Every program also proves the preload took effect (the semantics test fails in `pyalloc`
//! mode when `pyalloc_malloc_owns` is missing, and checks pyalloc's class sizes, which glibc
//! does not have), so a run where `LD_PRELOAD` silently did nothing cannot pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The library under test: cargo builds this package's library (the cdylib next to the rlib
/// the tests could link) into `target/<profile>/deps/`, the directory of this test binary.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe
        .parent()
        .expect("the test binary lies in target/<profile>/deps");
    let so = deps.join("libpyalloc_malloc.so");
    assert!(
        so.is_file(),
        "{} is missing: cargo builds it before this package's tests",
        so.display()
    );
    so
}

/// Compiles `tests/c/<name>.c` into the target's scratch directory, once per test process;
/// returns the program.
///
/// Several tests run the same program on parallel threads. Were each to compile it, one
/// thread's linker could still be writing the file while another thread executes it, and
/// `execve` fails with `ETXTBSY` ("Text file busy"). So the first caller compiles, under a lock,
/// into a name of its own and renames the finished program into place; the others wait for
/// the lock and reuse the path.
fn compile(name: &str) -> PathBuf {
    static COMPILED: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut compiled = COMPILED.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(program) = compiled.get(name) {
        return program.clone();
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let program = scratch.join(format!("preload-{name}"));
    let partial = scratch.join(format!("preload-{name}.{}.partial", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-O1",
            "-g",
            "-Wall",
            "-Wno-use-after-free",
            "-pthread",
            "-o",
        ])
        .arg(&partial)
        .arg(&source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("running {cc}: {e} (a C compiler is needed for these tests)"));
    assert!(status.success(), "{cc} failed on {}", source.display());
    std::fs::rename(&partial, &program)
        .unwrap_or_else(|e| panic!("moving {} to {}: {e}", partial.display(), program.display()));
    compiled.insert(name.to_owned(), program.clone());
    program
}

/// Runs `program` with `args`, under the preload or not; returns its output, after printing
/// its stderr (and its stdout when short).
fn run(program: &Path, args: &[&str], preload: bool, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(program);
    command.args(args).env_remove("LD_PRELOAD");
    if preload {
        command.env("LD_PRELOAD", library());
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("running the test program");
    if output.stdout.len() < 4096 {
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn semantics_hold_for_glibc_itself() {
    // The generic checks, without the library: they describe glibc, not just pyalloc.
    let output = run(&compile("semantics"), &["glibc"], false, &[]);
    assert!(
        output.status.success(),
        "glibc fails its own semantics test"
    );
}

#[test]
fn semantics_under_the_preload() {
    let output = run(&compile("semantics"), &["pyalloc"], true, &[]);
    assert!(
        output.status.success(),
        "the semantics test failed under the preload"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("(pyalloc,"), "{stdout}");
}

#[test]
fn the_pyalloc_checks_fail_without_the_library() {
    // The program must notice when the library is not there.
    let output = run(&compile("semantics"), &["pyalloc"], false, &[]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn threads_free_each_others_blocks() {
    let output = run(
        &compile("stress"),
        &["4", "3", "50000"],
        true,
        &[("PYALLOC_MALLOC_STATS", "1")],
    );
    assert!(
        output.status.success(),
        "the stress test failed under the preload"
    );
    // The report at exit: several heaps were made (one per thread, adopted across rounds),
    // and the arenas were pyalloc's.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pyalloc-malloc: heaps "))
        .expect("PYALLOC_MALLOC_STATS=1 prints the figures at exit");
    let heaps: usize = line["pyalloc-malloc: heaps ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number of heaps");
    assert!(
        heaps >= 5,
        "4 threads and the fallback heap at least: {line}"
    );
    assert!(line.contains(", arenas "), "{line}");
    assert!(!line.contains(", arenas 0 "), "{line}");
}

#[test]
fn fork_while_threads_allocate() {
    let output = run(&compile("fork"), &["40"], true, &[]);
    assert!(
        output.status.success(),
        "a child of fork failed under the preload"
    );
}

#[test]
fn programs_give_the_same_answers() {
    // A real program, with and without the library: sort(1) allocates a line per input line.
    let input = Path::new(env!("CARGO_TARGET_TMPDIR")).join("preload-sort-input");
    let lines: String = (0..50_000u64)
        .map(|i| format!("{:x} line {}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let sort = |preload: bool| {
        let output = run(
            Path::new("sort"),
            &[input.to_str().unwrap()],
            preload,
            &[("LC_ALL", "C")],
        );
        assert!(output.status.success());
        output.stdout
    };
    let (plain, preloaded) = (sort(false), sort(true));
    assert_eq!(plain.len(), preloaded.len());
    assert!(
        plain == preloaded,
        "sort's output differs under the preload"
    );
}
