#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds a consumer
# project against it both ways, then runs what it built:
#   1. pkg-config (shardalloc.pc, shardalloc-core.pc --static) and the C compiler;
#   2. find_package(shardalloc) after moving the prefix elsewhere (relocatable):
#      shardalloc::shardalloc, shardalloc::override, shardalloc::core;
#      and the moved bin/shardalloc-run, which finds the moved library.
# The consumers check they really run on shardalloc (tests/packaging/consumer).
# Usage: packaging_test.sh BUILD_DIR CMAKE C_COMPILER CXX_COMPILER
# Exit 0 pass, 1 fail, 77 skip (pkg-config missing: the find_package half still runs first).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$1
CMAKE=${2:-cmake}
CC=${3:-cc}
CXX=${4:-c++}

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/shardalloc-packaging.XXXXXX")
[ -n "${TEST_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

step "cmake --install $BUILD --prefix $work/stage"
"$CMAKE" --install "$BUILD" --prefix "$work/stage" >"$work/install.log" || { cat "$work/install.log"; fail "install failed"; }

stage=$work/stage
libdir=$(dirname "$(find "$stage" -name libshardalloc.so -print -quit)")
[ -f "$libdir/libshardalloc.so" ] || fail "libshardalloc.so not installed"
for f in "$libdir/libshardalloc_core.a" "$libdir/pkgconfig/shardalloc.pc" "$libdir/pkgconfig/shardalloc-core.pc" \
         "$libdir/cmake/shardalloc/shardalloc-config.cmake" "$libdir/cmake/shardalloc/shardalloc-config-version.cmake" \
         "$stage/include/shardalloc/shardalloc.h" "$stage/include/shardalloc/region.h" \
         "$stage/include/shardalloc/stats.h" "$stage/include/shardalloc/shardalloc.hpp" \
         "$stage/bin/shardalloc-heapmap" "$stage/bin/shardalloc-run" \
         "$libdir/libshardalloc.so.1" \
         $([ ! -e "$BUILD/libshardalloc-checked.so" ] || echo "$libdir/libshardalloc-checked.so.1"); do
  [ -e "$f" ] || fail "not installed: ${f#$stage/}"
done
[ "$(readelf -d "$libdir/libshardalloc.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')" = libshardalloc.so.1 ] ||
  fail "installed libshardalloc.so has not the SONAME libshardalloc.so.1"
# Nothing private leaks out, and the installed library needs nothing from the build tree.
[ -z "$(find "$stage/include" -name '*.h' ! -path '*/shardalloc/*')" ] || fail "unexpected headers installed"
if readelf -d "$libdir/libshardalloc.so" | grep -E 'RPATH|RUNPATH' | grep -q "$BUILD"; then
  fail "installed libshardalloc.so has an RPATH into the build tree"
fi
echo "installed: $(cd "$stage" && find . -type f | sort | tr '\n' ' ')"

# ---- 1. pkg-config --------------------------------------------------------------
pkgconfig_ok=1
if command -v pkg-config >/dev/null 2>&1; then
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  step "pkg-config: shardalloc $(pkg-config --modversion shardalloc): $(pkg-config --cflags --libs shardalloc)"
  "$CC" -O2 -o "$work/pc_consumer" "$HERE/consumer/consumer.c" $(pkg-config --cflags --libs shardalloc) -ldl
  LD_LIBRARY_PATH=$libdir "$work/pc_consumer" "$libdir" || fail "pkg-config consumer (libshardalloc.so)"
  step "pkg-config: shardalloc-core: $(pkg-config --static --cflags --libs shardalloc-core)"
  "$CC" -O2 -o "$work/pc_consumer_core" "$HERE/consumer/consumer_core.c" $(pkg-config --static --cflags --libs shardalloc-core)
  ! readelf -d "$work/pc_consumer_core" | grep -q libshardalloc || fail "static consumer depends on libshardalloc.so"
  "$work/pc_consumer_core" || fail "pkg-config consumer (libshardalloc_core.a)"
  unset PKG_CONFIG_PATH
else
  echo "pkg-config is not installed: the pkg-config half is skipped"
  pkgconfig_ok=0
fi

# ---- 2. find_package, from a moved prefix ------------------------------------------
mv "$stage" "$work/moved"
prefix=$work/moved
libdir=$prefix/${libdir#$stage/}
step "find_package(shardalloc) with CMAKE_PREFIX_PATH=$prefix"
"$CMAKE" -S "$HERE/consumer" -B "$work/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" ||
  { cat "$work/configure.log"; fail "consumer project: configure failed"; }
grep "shardalloc 0" "$work/configure.log" || true
"$CMAKE" --build "$work/consumer-build" -j2 >"$work/build.log" || { cat "$work/build.log"; fail "consumer project: build failed"; }
for exe in consumer consumer_override; do
  "$work/consumer-build/$exe" "$libdir" || fail "find_package consumer $exe"
done
! readelf -d "$work/consumer-build/consumer_core" | grep -q libshardalloc || fail "consumer_core depends on libshardalloc.so"
"$work/consumer-build/consumer_core" || fail "find_package consumer_core"
"$work/consumer-build/consumer_cpp" || fail "find_package consumer_cpp"

step "the moved bin/shardalloc-run preloads the moved library"
"$CC" -O2 -I"$prefix/include" -o "$work/preload_check" "$HERE/preload_check.c" -ldl
out=$(env -u LD_PRELOAD -u SHARDALLOC_LIB_DIR "$prefix/bin/shardalloc-run" "$work/preload_check") ||
  fail "shardalloc-run preload_check: $out"
echo "$out"
case $out in *"is shardalloc's, from $(cd "$libdir" && pwd -P)/libshardalloc.so.1 "*) ;; *) fail "shardalloc-run: $out" ;; esac

[ $pkgconfig_ok -eq 1 ] || { echo "SKIP: pkg-config half (find_package half passed)"; exit 77; }
echo "PASS: packaging (pkg-config and find_package consumers run on shardalloc)"
