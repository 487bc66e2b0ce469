//! Runs the built `pyalloc-python` on Python snippets that allocate and free many small
//! objects through the OBJ and MEM domains, and checks what they print. Skipped, with a
//! printed line, where the binary was built without an embeddable Python.

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_pyalloc-python");

/// Runs the binary with `args` and `env`; `None` (and a printed line) when it is the stub.
fn run(args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    let out = Command::new(BINARY)
        .args(args)
        // The tests decide the allocator settings themselves.
        .env_remove("PYTHONMALLOC")
        .env_remove("PYTHONDEVMODE")
        .env_remove("PYALLOC_PYTHON_STATS")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) && stderr.contains("built without an embeddable Python") {
        println!("skipped: {}", stderr.trim());
        return None;
    }
    Some(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds and drops lists, tuples, dicts, floats, strings and objects of many sizes (every
/// small size class, and a few large blocks), resizes lists and strings (realloc), and checks
/// every result; prints one line of totals.
const CHURN: &str = r#"
import gc, sys
total = 0
for round in range(20):
    objs = []
    for i in range(5000):
        objs.append((i, float(i) / 3, str(i) * (i % 40), {"k": i, i: [i] * (i % 9)}))
    for i, (n, f, s, d) in enumerate(objs):
        assert n == i and f == i / 3 and len(s) == len(str(i)) * (i % 40)
        assert d["k"] == i and d[i] == [i] * (i % 9)
    grown = []
    for i in range(2000):
        grown.append(bytes(i % 600))
        grown[-1] += b"x" * (i % 300)
    total += sum(map(len, grown)) + len(objs)
    del objs[::2]
    big = [bytearray(100000) for _ in range(4)]
    total += sum(map(len, big))
    del big, grown, objs
    gc.collect()
print("total", total)
print("zero", [bytes(0) for _ in range(3)] == [b"", b"", b""])
"#;

#[test]
fn churn_of_small_objects() {
    let Some(out) = run(&["-c", CHURN], &[]) else {
        return;
    };
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "status {}: {}{}",
        out.status,
        stdout,
        text(&out.stderr)
    );
    // 20 rounds of: sum over i<2000 of (i%600 + i%300), 5000 tuples, 4 * 100000 bytes.
    let grown: usize = (0..2000).map(|i| i % 600 + i % 300).sum();
    let expected = 20 * (grown + 5000 + 400_000);
    assert!(stdout.contains(&format!("total {expected}\n")), "{stdout}");
    assert!(stdout.contains("zero True\n"), "{stdout}");
}

#[test]
fn behaves_as_python3() {
    // Arguments and exit statuses are python3's: sys.argv, sys.exit, an error's status 1.
    let Some(out) = run(
        &[
            "-c",
            "import sys; print(sys.argv[1:]); sys.exit(7)",
            "a",
            "-b",
        ],
        &[],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "['a', '-b']\n");
    let out = run(&["-c", "raise ValueError('x')"], &[]).expect("not the stub");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("ValueError: x"));
    // -I (isolated) is parsed at the pre-initialisation as by python3.
    let out = run(&["-I", "-c", "import sys; print(sys.flags.isolated)"], &[]).unwrap();
    assert_eq!(text(&out.stdout), "1\n");
}

#[test]
fn debug_hooks_over_pyalloc() {
    // Under -X dev and PYTHONMALLOC=debug CPython's debug hooks wrap pyalloc: a write past the
    // end of a PyMem_Malloc block is caught when it is freed.
    let probe = "import _testcapi; _testcapi.pymem_buffer_overflow()";
    for (args, env) in [
        (vec!["-X", "dev", "-c", probe], vec![]),
        (vec!["-c", probe], vec![("PYTHONMALLOC", "debug")]),
    ] {
        let Some(out) = run(&args, &env) else {
            return;
        };
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("bad trailing pad byte"),
            "{args:?} {env:?}: {stderr}"
        );
    }
    // And a churn under the hooks runs clean.
    let out = run(&["-X", "dev", "-c", CHURN], &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn statistics_at_exit() {
    let Some(out) = run(
        &["-c", "x = [object() for _ in range(100000)]"],
        &[("PYALLOC_PYTHON_STATS", "1")],
    ) else {
        return;
    };
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("# arenas allocated total"))
        .unwrap_or_else(|| panic!("no statistics: {stderr}"));
    let arenas: usize = line
        .rsplit(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(arenas > 0, "{stderr}");
}
