#!/usr/bin/env bash
# The Rust crate's tests (tests/rust/CMakeLists.txt says what each mode does).
# Usage: cargo_test.sh hosted|no_std CARGO SOURCE_DIR CMAKE NM
# Environment: CXX (the C++ compiler build.rs uses), CARGO_TARGET_DIR.
# Exit 0 pass, 1 fail, 77 skip (no cargo).
set -euo pipefail
MODE=$1
CARGO=$2
SRC=$3
CMAKE=$4
NM=$5

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

if [ -z "$CARGO" ] || [ ! -x "$CARGO" ] || [[ $CARGO == *NOTFOUND ]]; then
  echo "SKIP: cargo is not installed (tools/install-deps installs Debian's cargo)"
  exit 77
fi
# cargo runs the rustc next to it (a rustup proxy, or Debian's /usr/bin/rustc).
PATH=$(dirname "$CARGO"):$PATH
export PATH
manifest=$SRC/bindings/rust/Cargo.toml
echo "$("$CARGO" --version), $(rustc --version), CXX=${CXX:-c++}"

# The OUT_DIR of the crate's build script, from cargo's JSON messages.
out_dir() {
  grep '"reason":"build-script-executed"' | grep '"package_id":"[^"]*shardalloc' |
    sed 's/.*"out_dir":"\([^"]*\)".*/\1/' | tail -n 1
}
# The symbols an archive needs from outside (undefined in a member, defined in none).
needed_symbols() {
  comm -23 <("$NM" --undefined-only --format=posix "$1" | awk 'NF >= 2 {print $1}' | sort -u) \
           <("$NM" --defined-only --extern-only --format=posix "$1" | awk 'NF >= 2 {print $1}' | sort -u)
}

start=$(date +%s)
case $MODE in
  hosted)
    step "cargo test --no-run (build.rs compiles the hosted library)"
    json=$("$CARGO" test --offline --manifest-path "$manifest" --no-run --message-format=json) || fail "cargo test --no-run"
    dir=$(out_dir <<<"$json")
    lib=$dir/libshardalloc_static.a
    [ -f "$lib" ] || fail "no $lib (out_dir '$dir')"
    echo "built $lib in $(( $(date +%s) - start )) s"
    # The hosted library needs libc only: no libstdc++ / C++ runtime symbols
    # (mangled names, __cxa_*, __gxx_personality*, _Unwind_*), which is why
    # build.rs links nothing beyond what Rust's std links.
    # (__cxa_thread_atexit_impl is glibc's, weak: thread exit's registration,
    # platform/linux/thread_heaps.cpp; no C++ runtime.)
    needed=$(needed_symbols "$lib" | tr '\n' ' ')
    echo "libshardalloc_static.a needs from outside: $needed"
    cxx_runtime=$(needed_symbols "$lib" | grep -E '^(_Z|__cxa_|__gxx_|_Unwind_)' |
      grep -v -x '__cxa_thread_atexit_impl' || true)
    [ -z "$cxx_runtime" ] || fail "the hosted library needs the C++ runtime: $cxx_runtime"
    step "cargo test"
    "$CARGO" test --offline --manifest-path "$manifest" || fail "cargo test"
    ;;
  no_std)
    step "cargo build --no-default-features (build.rs compiles the freestanding library)"
    json=$("$CARGO" build --offline --manifest-path "$manifest" --no-default-features --message-format=json) ||
      fail "cargo build --no-default-features"
    dir=$(out_dir <<<"$json")
    lib=$dir/libshardalloc_freestanding.a
    [ -f "$lib" ] || fail "no $lib (out_dir '$dir')"
    echo "built $lib in $(( $(date +%s) - start )) s"
    # The allow-list of the CMake-built freestanding library (one source of truth).
    allowed=$(sed -n 's/^set(SHARDALLOC_FREESTANDING_ALLOWED \(.*\))$/\1/p' "$SRC/cmake/freestanding.cmake")
    [ -n "$allowed" ] || fail "no set(SHARDALLOC_FREESTANDING_ALLOWED ...) line in cmake/freestanding.cmake"
    step "no libc: undefined symbols within the allow-list ($allowed)"
    "$CMAKE" -DNM="$NM" -DLIB="$lib" "-DALLOWED=${allowed// /;}" -P "$SRC/cmake/check-undefined-symbols.cmake" ||
      fail "the freestanding library needs symbols outside the allow-list"
    step "cargo test --no-default-features"
    "$CARGO" test --offline --manifest-path "$manifest" --no-default-features || fail "cargo test --no-default-features"
    ;;
  *) fail "mode $MODE: want hosted or no_std" ;;
esac
echo "PASS: rust $MODE in $(( $(date +%s) - start )) s"
