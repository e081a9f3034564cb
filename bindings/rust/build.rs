//! Links libshardalloc_static.a from a CMake build of shardalloc.
//!
//! SHARDALLOC_BUILD_DIR: the CMake build directory holding
//! libshardalloc_static.a (default: ../../build, the repository's `build/`;
//! a relative path is taken from this crate's directory). Build it first:
//!     cmake -S . -B build && cmake --build build --target shardalloc_static
//!
//! The library is C++ compiled freestanding (no exceptions, no RTTI, no
//! libstdc++ calls): it needs only libc, pthreads and libgcc helpers, all of
//! which Rust's std links already on linux-gnu; no libstdc++.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SHARDALLOC_BUILD_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = env::var_os("SHARDALLOC_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../../build"));
    let dir = if dir.is_relative() { manifest.join(dir) } else { dir };
    let lib = dir.join("libshardalloc_static.a");
    if !lib.is_file() {
        panic!(
            "{} not found: build shardalloc first (cmake -S . -B build && cmake --build build --target \
             shardalloc_static) or point SHARDALLOC_BUILD_DIR at a CMake build directory",
            lib.display()
        );
    }
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=shardalloc_static");
    // pthread_key_create & co. (in libc since glibc 2.34; harmless before) and
    // libgcc helpers such as __popcountdi2 (libgcc_s, which std links anyway).
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=gcc_s");
    println!("cargo:root={}", dir.display());
}
