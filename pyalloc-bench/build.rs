//! Links CPython's `libpython3.x` (for the pymalloc peer) when `python3-config` can find it,
//! and builds mimalloc's two lines as shared libraries for the C-ABI peers.
//!
//! Runs `python3-config --embed --ldflags` (or the program named by `PYTHON3_CONFIG`), turns its
//! flags into link directives and sets `cfg(has_pymalloc)`. Where python3-config or the shared
//! library is missing, it prints a cargo warning and the pymalloc peer is skipped at run time:
//! never a build failure.
//!
//! The `mimalloc` crate builds one line of mimalloc into the process (v3 by default; its `v2`
//! feature selects v2, and the two cannot be linked together). To compare both on the same
//! calls, the sources `libmimalloc-sys` ships for each line are compiled here, with that crate's
//! release flags (`-O3 -DMI_DEBUG=0 -DMI_BUILD_RELEASE -DNDEBUG -ftls-model=initial-exec`) plus
//! `MI_MALLOC_OVERRIDE` (so the library exports `malloc` and friends), into
//! `OUT_DIR/libmimalloc-v2.so` and `libmimalloc-v3.so`; their paths reach the code as
//! `PYALLOC_BENCH_MIMALLOC_V2_SO` / `_V3_SO`. A failed compile is a warning, and the peer is
//! skipped at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_pymalloc)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PYTHON3_CONFIG");
    println!("cargo::rerun-if-env-changed=PYALLOC_BENCH_NO_PYTHON");
    for line in ["v2", "v3"] {
        match build_mimalloc_so(line) {
            Ok(path) => println!(
                "cargo::rustc-env=PYALLOC_BENCH_MIMALLOC_{}_SO={}",
                line.to_uppercase(),
                path.display()
            ),
            Err(why) => println!("cargo::warning=mimalloc {line} shared library left out: {why}"),
        }
    }
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

/// Compiles the `libmimalloc-sys` sources of mimalloc `line` into a shared library in
/// `OUT_DIR`.
fn build_mimalloc_so(line: &str) -> Result<PathBuf, String> {
    // `libmimalloc-sys` (links = "mimalloc") publishes its include directory,
    // `.../c_src/mimalloc/<its line>/include`; both lines sit beside it.
    let include = std::env::var("DEP_MIMALLOC_INCLUDE_DIR")
        .map_err(|_| "libmimalloc-sys did not publish DEP_MIMALLOC_INCLUDE_DIR".to_owned())?;
    let root = Path::new(&include)
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected DEP_MIMALLOC_INCLUDE_DIR")?
        .join(line);
    let source = root.join("src/static.c");
    if !source.exists() {
        return Err(format!("{} is missing", source.display()));
    }
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join(format!("libmimalloc-{line}.so"));
    let compiler = cc::Build::new()
        .opt_level(3)
        .try_get_compiler()
        .map_err(|e| e.to_string())?;
    let status = compiler
        .to_command()
        .args(["-O3", "-fPIC", "-shared", "-ftls-model=initial-exec"])
        .args([
            "-DMI_DEBUG=0",
            "-DMI_BUILD_RELEASE",
            "-DNDEBUG",
            "-DMI_MALLOC_OVERRIDE",
        ])
        .arg("-Wno-error=date-time")
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("src"))
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .arg("-lpthread")
        .status()
        .map_err(|e| format!("cannot run the C compiler: {e}"))?;
    if !status.success() {
        return Err(format!("the C compiler failed on {}", source.display()));
    }
    Ok(out)
}
