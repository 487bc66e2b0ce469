//! Links CPython's `libpython3.x` (for the pymalloc peer) when `python3-config` can find it.
//!
//! Runs `python3-config --embed --ldflags` (or the program named by `PYTHON3_CONFIG`), turns its
//! flags into link directives and sets `cfg(has_pymalloc)`. Where python3-config or the shared
//! library is missing, it prints a cargo warning and the pymalloc peer is skipped at run time:
//! never a build failure.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_pymalloc)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PYTHON3_CONFIG");
    println!("cargo::rerun-if-env-changed=PYALLOC_BENCH_NO_PYTHON");
    if std::env::var_os("PYALLOC_BENCH_NO_PYTHON").is_some() {
        println!("cargo::warning=PYALLOC_BENCH_NO_PYTHON is set: the pymalloc peer is left out");
        return;
    }
    match python_link_flags() {
        Ok(flags) => emit(&flags),
        Err(why) => println!("cargo::warning=pymalloc peer left out: {why}"),
    }
}

/// What the link needs: search directories, libraries, and raw linker arguments (the rpath).
struct LinkFlags {
    dirs: Vec<String>,
    libs: Vec<String>,
    args: Vec<String>,
    python_lib: String,
}

fn python_link_flags() -> Result<LinkFlags, String> {
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
    let shared = format!("lib{}.so", flags.python_lib);
    if !flags
        .dirs
        .iter()
        .any(|d| Path::new(d).join(&shared).exists())
    {
        return Err(format!(
            "{shared} is not in any of {:?} (a Python built without --enable-shared?)",
            flags.dirs
        ));
    }
    Ok(flags)
}

fn emit(flags: &LinkFlags) {
    for dir in &flags.dirs {
        println!("cargo::rustc-link-search=native={dir}");
    }
    for lib in &flags.libs {
        println!("cargo::rustc-link-lib={lib}");
    }
    for arg in &flags.args {
        println!("cargo::rustc-link-arg={arg}");
    }
    println!(
        "cargo::rustc-env=PYALLOC_BENCH_PYTHON_LIB=lib{}",
        flags.python_lib
    );
    println!("cargo::rustc-cfg=has_pymalloc");
}
