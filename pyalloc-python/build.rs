//! Links the `libpython3.x` of the `python3` on `PATH` when `python3-config` can find it.
//!
//! Runs `python3-config --embed --ldflags` (or the program named by `PYTHON3_CONFIG`), turns its
//! flags into link directives, adds the rpath it names, and sets `cfg(has_python)`. Where
//! python3-config, the shared library or a recent enough version (3.8, where `Py_BytesMain` and
//! `PyPreConfig` appeared) is missing, or `PYALLOC_PYTHON_NO_PYTHON` is set, it prints a cargo
//! warning and the binary is built as a stub that says so and exits with status 2: never a build
//! failure. pyo3-ffi only declares (see pyo3-build-config.txt), so nothing else links libpython.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_python)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PYTHON3_CONFIG");
    println!("cargo::rerun-if-env-changed=PYALLOC_PYTHON_NO_PYTHON");
    // python3-config is looked up on PATH: another PATH may mean another Python.
    println!("cargo::rerun-if-env-changed=PATH");
    let found = if std::env::var_os("PYALLOC_PYTHON_NO_PYTHON").is_some() {
        Err("PYALLOC_PYTHON_NO_PYTHON is set".to_owned())
    } else {
        python_link_flags()
    };
    match found {
        Ok(flags) => emit(&flags),
        Err(why) => {
            println!("cargo::warning=pyalloc-python is built as a stub: {why}");
            println!("cargo::rustc-env=PYALLOC_PYTHON_STUB_REASON={why}");
        }
    }
}

/// What the link needs: search directories, libraries, raw linker arguments (the rpath).
struct LinkFlags {
    dirs: Vec<String>,
    libs: Vec<String>,
    args: Vec<String>,
    /// `python3.11`: the library `-l` names.
    python_lib: String,
}

fn python_link_flags() -> Result<LinkFlags, String> {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "macos" {
        return Err(format!(
            "embedding is built for Linux and macOS only, not {os}"
        ));
    }
    let program = std::env::var("PYTHON3_CONFIG").unwrap_or_else(|_| "python3-config".into());
    let out = Command::new(&program)
        .args(["--embed", "--ldflags"])
        .output()
        .map_err(|e| format!("cannot run `{program} --embed --ldflags`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} --embed --ldflags` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = LinkFlags {
        dirs: Vec::new(),
        libs: Vec::new(),
        args: Vec::new(),
        python_lib: String::new(),
    };
    for word in text.split_whitespace() {
        if let Some(dir) = word.strip_prefix("-L") {
            if !flags.dirs.iter().any(|d| d == dir) {
                flags.dirs.push(dir.to_owned());
            }
        } else if let Some(lib) = word.strip_prefix("-l") {
            if lib.starts_with("python") {
                flags.python_lib = lib.to_owned();
            }
            flags.libs.push(lib.to_owned());
        } else if word.starts_with("-Wl,") {
            flags.args.push(word.to_owned());
        }
    }
    if flags.python_lib.is_empty() {
        return Err(format!(
            "`{program}` names no -lpython library: {}",
            text.trim()
        ));
    }
    check_version(&flags.python_lib)?;
    let shared = [
        format!("lib{}.so", flags.python_lib),
        format!("lib{}.dylib", flags.python_lib),
    ];
    let dir = flags
        .dirs
        .iter()
        .find(|d| shared.iter().any(|s| Path::new(d).join(s).exists()))
        .cloned()
        .ok_or_else(|| {
            format!(
                "{} is not in any of {:?} (a Python built without --enable-shared?)",
                shared[0], flags.dirs
            )
        })?;
    // python3-config names the rpath only when Python was configured with one (pyenv does):
    // add it otherwise, so the binary runs without LD_LIBRARY_PATH.
    if !flags.args.iter().any(|a| a.contains("-rpath")) {
        flags.args.push(format!("-Wl,-rpath,{dir}"));
    }
    Ok(flags)
}

/// `python3.11` or `python3.11d`: at least 3.8 (PyPreConfig, Py_BytesMain).
fn check_version(lib: &str) -> Result<(), String> {
    let version = lib.trim_start_matches("python");
    let mut parts = version.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let minor = parts.next().map(|m| {
        m.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    match (major, minor.and_then(|m| m.parse::<u32>().ok())) {
        (Some(3), Some(minor)) if minor >= 8 => Ok(()),
        _ => Err(format!("lib{lib} is not CPython 3.8 or later")),
    }
}

fn emit(flags: &LinkFlags) {
    for dir in &flags.dirs {
        println!("cargo::rustc-link-search=native={dir}");
    }
    for lib in &flags.libs {
        println!("cargo::rustc-link-lib={lib}");
    }
    for arg in &flags.args {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!(
        "cargo::rustc-env=PYALLOC_PYTHON_LIB=lib{}",
        flags.python_lib
    );
    println!("cargo::rustc-cfg=has_python");
}
