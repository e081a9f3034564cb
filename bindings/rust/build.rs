//! Compiles shardalloc's C++ sources (../../src, ../../include) into a static
//! library in OUT_DIR and links it: `cargo build` needs no earlier CMake build,
//! only a C++20 compiler and `ar`. No crates: std::process::Command.
//!
//! Which library (the lists of sources and flags are read from
//! ../../cmake/library-sources.txt, shared with CMake's targets):
//!   feature `hosted` (default)   libshardalloc_static.a: the core, every API
//!                                and the Linux platform (needs libc only)
//!   no `hosted` feature          libshardalloc_freestanding.a: the core, the
//!                                region and first-class heap APIs and the
//!                                bare-metal platform (no libc: kernels)
//!
//! Environment (the `cc` crate's conventions):
//!   CXX_<target>, CXX_<target_with_underscores>, TARGET_CXX (cross) or
//!   HOST_CXX (native), CXX      the C++ compiler (may carry arguments, e.g.
//!                               "ccache g++"); default: `c++` for the host,
//!                               `<arch>-linux-gnu-g++` when cross compiling
//!                               (Debian's g++-<arch>-linux-gnu, used
//!                               freestanding for kernel targets)
//!   CXXFLAGS_<target>, ..., CXXFLAGS   appended after our flags (so they win)
//!   AR_<target>, ..., AR        the archiver; default `<arch>-linux-gnu-ar`
//!                               next to a cross g++, else `ar`
//!   SHARDALLOC_LIB_DIR          link a library built beforehand instead: a
//!                               directory holding libshardalloc_static.a
//!                               (a CMake build directory) or
//!                               libshardalloc_core.a (an installed -dev
//!                               package), or libshardalloc_freestanding.a
//!                               without `hosted`; relative to this crate
//!   NUM_JOBS (set by cargo)     parallel compiler processes
//!
//! Flags: -std=c++20 -O3 -DNDEBUG (CMake's Release) plus the library's flags
//! from library-sources.txt, -ffunction-sections -fdata-sections, and per
//! target the flags that make the objects link with Rust's code for it:
//!   *-linux-*                  -fPIC (Rust links position-independent executables),
//!                              -mno-outline-atomics on aarch64 (GCC)
//!   x86_64-unknown-none        -fPIE -mno-red-zone -mgeneral-regs-only (soft-float, PIE)
//!   aarch64-unknown-none*      -fno-pic -mstrict-align -mno-outline-atomics (GCC),
//!                              -mgeneral-regs-only for the softfloat target
//!   riscv64*-unknown-none-elf  -fno-pic -mcmodel=medany -march/-mabi from the
//!                              target's features (rv64gc/lp64d, rv64imac/lp64)
//! A kernel adds its own (e.g. -mcmodel=kernel) through CXXFLAGS_<target>.
//!
//! What the linked library needs from outside:
//!   hosted        libc (pthread_key_create & co. are in libc since glibc 2.34;
//!                 Rust's std links libpthread for older glibc) and
//!                 __popcountdi2 (compiler_builtins, libgcc_s), all of which
//!                 Rust's std already links on Linux: nothing is added. No
//!                 libstdc++ (no exceptions, no RTTI, no C++ runtime calls).
//!   freestanding  memcpy, memset and, on some targets, __clzdi2, __ctzdi2,
//!                 __popcountdi2 (docs/kernel.md): the kernel or
//!                 compiler_builtins provides them.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    let host = env::var("HOST").expect("HOST");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let os = env::var("CARGO_CFG_TARGET_OS").expect("CARGO_CFG_TARGET_OS");
    let hosted = env::var_os("CARGO_FEATURE_HOSTED").is_some();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHARDALLOC_LIB_DIR");

    if hosted && os != "linux" {
        panic!(
            "shardalloc: the `hosted` feature (the default) needs a Linux target; {} is not one. \
             For a kernel or bare-metal target use `default-features = false` (the freestanding library).",
            target
        );
    }
    let lib_name = if hosted { "shardalloc_static" } else { "shardalloc_freestanding" };
    let root = manifest.join("../..");
    println!("cargo:include={}", root.join("include").display());

    if let Some(dir) = env::var_os("SHARDALLOC_LIB_DIR").filter(|d| !d.is_empty()) {
        link_prebuilt(&manifest.join(dir), hosted);
        return;
    }

    let list_file = root.join("cmake/library-sources.txt");
    let lists = fs::read_to_string(&list_file).unwrap_or_else(|e| {
        panic!(
            "shardalloc: cannot read {} ({}): this crate compiles the C++ sources of the repository it \
             lives in (../../src), so use it from a checkout of shardalloc (a path or git dependency), \
             or set SHARDALLOC_LIB_DIR to a directory with a library built beforehand",
            list_file.display(),
            e
        )
    });
    println!("cargo:rerun-if-changed={}", list_file.display());
    println!("cargo:rerun-if-changed={}", root.join("src").display());
    println!("cargo:rerun-if-changed={}", root.join("include").display());
    let kind = if hosted { "hosted" } else { "freestanding" };
    let sources = expand_sources(&root, &words(&lists, &format!("{}.sources", kind)));
    let lib_flags = words(&lists, &format!("{}.flags", kind));
    let defines = words(&lists, &format!("{}.defines", kind));

    let cross = target != host;
    let gnu = gnu_triple(&arch);
    let cxx = match tool_from_env("CXX", &target, cross) {
        Some(cmd) => cmd,
        None => vec![default_cxx(cross, &arch, &host, gnu, &target)],
    };
    let clang = is_clang(&cxx);

    let mut flags: Vec<String> = ["-std=c++20", "-O3", "-DNDEBUG", "-ffunction-sections", "-fdata-sections"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if clang && cross {
        flags.push(format!("--target={}", clang_target(&arch, &os)));
    }
    flags.extend(target_flags(&arch, &os, &target, clang));
    flags.extend(lib_flags);
    flags.extend(defines.iter().map(|d| format!("-D{}", d)));
    flags.push(format!("-I{}", root.join("include").display()));
    flags.push(format!("-I{}", root.join("src").display()));
    flags.extend(flags_from_env("CXXFLAGS", &target, cross));

    let obj_dir = out.join("obj");
    fs::create_dir_all(&obj_dir).expect("create OUT_DIR/obj");
    let jobs = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    let objects = compile_all(&cxx, &flags, &root, &sources, &obj_dir, jobs);

    let ar = match tool_from_env("AR", &target, cross) {
        Some(cmd) => cmd,
        None => vec![default_ar(&cxx, clang)],
    };
    let archive = out.join(format!("lib{}.a", lib_name));
    let _ = fs::remove_file(&archive); // `ar r` would keep members of an older archive
    let mut cmd = Command::new(&ar[0]);
    cmd.args(&ar[1..]).arg("crs").arg(&archive).args(&objects);
    check_output(&mut cmd, "archive the objects");

    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static={}", lib_name);
    println!("cargo:root={}", out.display());
}

/// The values of `key = a b c` in library-sources.txt.
fn words(text: &str, key: &str) -> Vec<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                return v.split_whitespace().map(str::to_string).collect();
            }
        }
    }
    panic!("shardalloc: cmake/library-sources.txt has no `{} =` line", key);
}

/// "dir/*.cpp" -> every .cpp file directly in dir (sorted), as CMake's
/// file(GLOB); anything else is a file. Paths relative to the repository.
fn expand_sources(root: &Path, patterns: &[String]) -> Vec<String> {
    let mut all = Vec::new();
    for p in patterns {
        if let Some(dir) = p.strip_suffix("/*.cpp") {
            let entries = fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("shardalloc: cannot list {}: {}", root.join(dir).display(), e));
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".cpp"))
                .map(|n| format!("{}/{}", dir, n))
                .collect();
            names.sort();
            all.extend(names);
        } else if p.contains('*') {
            panic!("shardalloc: library-sources.txt: only `dir/*.cpp` globs are understood, not {}", p);
        } else {
            all.push(p.clone());
        }
    }
    all.dedup();
    all
}

/// `NAME_<target>`, `NAME_<target_with_underscores>`, `TARGET_NAME` or
/// `HOST_NAME`, `NAME`: the first one set, split into program and arguments.
fn tool_from_env(name: &str, target: &str, cross: bool) -> Option<Vec<String>> {
    let mut found = None;
    for var in env_names(name, target, cross) {
        println!("cargo:rerun-if-env-changed={}", var);
        if found.is_none() {
            if let Some(v) = env::var_os(&var).and_then(|v| v.into_string().ok()) {
                let parts: Vec<String> = v.split_whitespace().map(str::to_string).collect();
                if !parts.is_empty() {
                    found = Some(parts);
                }
            }
        }
    }
    found
}

fn flags_from_env(name: &str, target: &str, cross: bool) -> Vec<String> {
    tool_from_env(name, target, cross).unwrap_or_default()
}

fn env_names(name: &str, target: &str, cross: bool) -> Vec<String> {
    vec![
        format!("{}_{}", name, target),
        format!("{}_{}", name, target.replace('-', "_")),
        format!("{}_{}", if cross { "TARGET" } else { "HOST" }, name),
        name.to_string(),
    ]
}

/// Debian's cross toolchain prefix for a Rust target architecture.
fn gnu_triple(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("x86_64-linux-gnu"),
        "x86" => Some("i686-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "riscv64" => Some("riscv64-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        "powerpc64" => Some("powerpc64le-linux-gnu"),
        "s390x" => Some("s390x-linux-gnu"),
        "loongarch64" => Some("loongarch64-linux-gnu"),
        _ => None,
    }
}

fn runs(program: &str) -> bool {
    Command::new(program).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

fn default_cxx(cross: bool, arch: &str, host: &str, gnu: Option<&str>, target: &str) -> String {
    if !cross {
        return "c++".to_string();
    }
    if let Some(triple) = gnu {
        let prefixed = format!("{}-g++", triple);
        if runs(&prefixed) {
            return prefixed;
        }
    }
    // The host compiler emits code for its own architecture: fine for a
    // bare-metal target of the same architecture (x86_64-unknown-none on x86-64).
    if host.starts_with(&format!("{}-", arch)) || (arch == "x86" && host.starts_with("i686-")) {
        return "c++".to_string();
    }
    panic!(
        "shardalloc: no C++ compiler for {}: install {} (Debian: apt-get install g++-{}) or set CXX_{} \
         (e.g. to a clang++, which gets --target)",
        target,
        gnu.map(|t| format!("{}-g++", t)).unwrap_or_else(|| "a cross g++".to_string()),
        gnu.unwrap_or("<arch>-linux-gnu"),
        target.replace('-', "_")
    );
}

fn default_ar(cxx: &[String], clang: bool) -> String {
    let program = Path::new(&cxx[0]).file_name().and_then(|n| n.to_str()).unwrap_or("");
    // riscv64-linux-gnu-g++ -> riscv64-linux-gnu-ar (the host's ar may not
    // know the target's object format for its symbol index).
    if let Some(prefix) = program.strip_suffix("g++") {
        if prefix.ends_with('-') {
            let ar = Path::new(&cxx[0]).with_file_name(format!("{}ar", prefix));
            let ar = ar.to_string_lossy().into_owned();
            if runs(&ar) {
                return ar;
            }
        }
    }
    if clang && runs("llvm-ar") && !runs("ar") {
        return "llvm-ar".to_string();
    }
    "ar".to_string()
}

fn is_clang(cxx: &[String]) -> bool {
    let mut cmd = Command::new(&cxx[0]);
    cmd.args(&cxx[1..]).arg("--version");
    match cmd.output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).contains("clang"),
        Err(e) => panic!(
            "shardalloc: cannot run the C++ compiler `{}` ({}): install a C++20 compiler \
             (Debian: apt-get install g++) or set CXX",
            cxx.join(" "),
            e
        ),
    }
}

fn clang_target(arch: &str, os: &str) -> String {
    let arch = if arch == "x86" { "i686" } else { arch };
    if os == "none" {
        format!("{}-unknown-none-elf", arch)
    } else {
        format!("{}-unknown-{}-gnu", arch, os)
    }
}

/// Code generation flags that match Rust's target (relocation model, code
/// model, floating point, alignment).
fn target_flags(arch: &str, os: &str, target: &str, clang: bool) -> Vec<String> {
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    let mut flags: Vec<&str> = Vec::new();
    if os == "linux" {
        flags.push("-fPIC");
        if arch == "aarch64" && !clang {
            // Debian's GCC otherwise calls __aarch64_cas8_acq & co., which are
            // in libgcc.a only, and Rust does not link libgcc.a
            // (cmake/freestanding.cmake does the same for its library).
            flags.push("-mno-outline-atomics");
        }
        return flags.into_iter().map(str::to_string).collect();
    }
    if os != "none" {
        println!(
            "cargo:warning=shardalloc: no code generation flags known for {}; add what it needs with CXXFLAGS_{}",
            target,
            target.replace('-', "_")
        );
        return Vec::new();
    }
    let mut owned = Vec::new();
    match arch {
        "x86_64" => flags.extend(["-fPIE", "-mno-red-zone", "-mgeneral-regs-only"]),
        "aarch64" => {
            flags.extend(["-fno-pic", "-mstrict-align"]);
            if !has("neon") {
                flags.push("-mgeneral-regs-only");
            }
            if !clang {
                flags.push("-mno-outline-atomics");
            }
        }
        "riscv64" => {
            flags.extend(["-fno-pic", "-mcmodel=medany"]);
            // The ISA is in the target's name (riscv64gc-, riscv64imac-): rustc
            // does not list the float extensions among its target features.
            let name = target.split('-').next().unwrap_or("").trim_start_matches("riscv64");
            let isa = if name.is_empty() { "gc".to_string() } else { name.to_string() };
            let letters = isa.replace('g', "imafd");
            let abi = if letters.contains('d') || has("d") {
                "lp64d"
            } else if letters.contains('f') || has("f") {
                "lp64f"
            } else {
                "lp64"
            };
            owned.push(format!("-march=rv64{}", isa));
            owned.push(format!("-mabi={}", abi));
        }
        _ => println!(
            "cargo:warning=shardalloc: no code generation flags known for {}; add what it needs with CXXFLAGS_{}",
            target,
            target.replace('-', "_")
        ),
    }
    let mut all: Vec<String> = flags.into_iter().map(str::to_string).collect();
    all.extend(owned);
    all
}

fn compile_all(cxx: &[String], flags: &[String], root: &Path, sources: &[String], obj_dir: &Path, jobs: usize) -> Vec<PathBuf> {
    let objects: Vec<PathBuf> = sources
        .iter()
        .map(|s| obj_dir.join(format!("{}.o", s.trim_end_matches(".cpp").replace('/', "_"))))
        .collect();
    let queue: Arc<Mutex<Vec<(PathBuf, PathBuf)>>> = Arc::new(Mutex::new(
        sources.iter().map(|s| root.join(s)).zip(objects.iter().cloned()).rev().collect(),
    ));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs.min(sources.len()))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let failures = Arc::clone(&failures);
            let cxx = cxx.to_vec();
            let flags = flags.to_vec();
            std::thread::spawn(move || loop {
                let job = queue.lock().unwrap().pop();
                let (src, obj) = match job {
                    Some(j) => j,
                    None => return,
                };
                let mut cmd = Command::new(&cxx[0]);
                cmd.args(&cxx[1..]).args(&flags).arg("-c").arg(&src).arg("-o").arg(&obj);
                match cmd.output() {
                    Ok(o) if o.status.success() => forward_warnings(&o),
                    Ok(o) => failures.lock().unwrap().push(format!(
                        "{:?}\n{}{}",
                        cmd,
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )),
                    Err(e) => failures.lock().unwrap().push(format!("{:?}: {}", cmd, e)),
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("compile worker");
    }
    let failures = failures.lock().unwrap();
    if !failures.is_empty() {
        panic!("shardalloc: compiling the C++ sources failed:\n{}", failures.join("\n"));
    }
    objects
}

fn forward_warnings(o: &Output) {
    for line in String::from_utf8_lossy(&o.stderr).lines() {
        if !line.trim().is_empty() {
            println!("cargo:warning={}", line);
        }
    }
}

fn check_output(cmd: &mut Command, what: &str) {
    match cmd.output() {
        Ok(o) if o.status.success() => forward_warnings(&o),
        Ok(o) => panic!("shardalloc: {} failed: {:?}\n{}", what, cmd, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("shardalloc: {} failed: {:?}: {}", what, cmd, e),
    }
}

/// SHARDALLOC_LIB_DIR: a library built beforehand.
fn link_prebuilt(dir: &Path, hosted: bool) {
    let names: &[&str] = if hosted { &["shardalloc_static", "shardalloc_core"] } else { &["shardalloc_freestanding"] };
    for name in names {
        let lib = dir.join(format!("lib{}.a", name));
        if lib.is_file() {
            println!("cargo:rerun-if-changed={}", lib.display());
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static={}", name);
            println!("cargo:root={}", dir.display());
            return;
        }
    }
    let wanted: Vec<String> = names.iter().map(|n| format!("lib{}.a", n)).collect();
    panic!(
        "shardalloc: SHARDALLOC_LIB_DIR={} holds none of {}: point it at a CMake build directory \
         (cmake --build build --target {}) or unset it to compile the sources here",
        dir.display(),
        wanted.join(", "),
        if hosted { "shardalloc_static" } else { "shardalloc_freestanding" }
    );
}
