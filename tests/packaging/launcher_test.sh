#!/usr/bin/env bash
# shellcheck disable=SC2016  # the sh -c scripts expand in the child
# tools/shardalloc-run: the copy in the build tree (next to libshardalloc.so),
# the source tree's, and copies in installed-like layouts.
#   - programs run on shardalloc (preload_check), the checked library with
#     --checked, statistics with --stats; exit status and arguments pass through
#   - LD_PRELOAD: appended to an existing one, not added twice, a second
#     shardalloc library refused
#   - usage errors (2), library or program not found (127)
#   - lookup: SHARDALLOC_LIB_DIR, next to itself, ../lib/<multiarch>, ../lib,
#     ../build
# Usage: launcher_test.sh BUILD_DIR SOURCE_DIR PRELOAD_CHECK
set -euo pipefail
BUILD=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P)
CHECK=$3

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
# expect STATUS CMD...: runs CMD, output in $out, fails unless it exits with STATUS.
expect() {
  local want=$1; shift
  set +e
  out=$("$@" 2>&1)
  local rc=$?
  set -e
  [ "$rc" -eq "$want" ] || fail "$* exited $rc, want $want; output: $out"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/shardalloc-launcher.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset LD_PRELOAD SHARDALLOC_SHOW_STATS SHARDALLOC_LIB_DIR SHARDALLOC_VERBOSE

run=$BUILD/shardalloc-run
[ -x "$run" ] || fail "$run missing (cmake/install.cmake copies it into the build tree)"
# What the launcher preloads (the path as it is given to LD_PRELOAD, which
# preload_check prints back): the build tree's libshardalloc.so.
lib=$("$run" --print-lib) || fail "--print-lib: $lib"
[ "$lib" = "$BUILD/libshardalloc.so" ] || fail "--print-lib: $lib, want $BUILD/libshardalloc.so"
# A checked (Debug) build has no separate checked library: libshardalloc.so is checked.
checked_lib=
if [ -e "$BUILD/libshardalloc-checked.so" ]; then
  checked_lib=$("$run" --checked --print-lib) || fail "--checked --print-lib: $checked_lib"
  [ "$checked_lib" = "$BUILD/libshardalloc-checked.so" ] || fail "--checked --print-lib: $checked_lib"
fi

step "without the launcher, malloc is glibc's"
expect 3 "$CHECK"
echo "$out"

step "shardalloc-run preload_check"
expect 0 "$run" "$CHECK"
echo "$out"
case $out in *"is shardalloc's, from $lib (checked: "*) ;; *) fail "not on $lib: $out" ;; esac

if [ -n "$checked_lib" ]; then
  step "shardalloc-run --checked preload_check"
  expect 0 "$run" --checked "$CHECK"
  echo "$out"
  case $out in *"is shardalloc's, from $checked_lib (checked: yes)"*) ;; *) fail "not on $checked_lib: $out" ;; esac
fi

step "exit status, arguments, --, /bin/true"
expect 0 "$run" /bin/true
expect 7 "$run" sh -c 'exit 7'
expect 0 "$run" -- sh -c '[ "$1" = "a b" ] && [ "$2" = "--stats" ]' sh "a b" --stats
expect 0 "$run" -- "$CHECK"

step "--stats prints the statistics at exit, without it nothing"
expect 0 "$run" --stats /bin/true
case $out in *"shardalloc: statistics of the process heap"*) ;; *) fail "--stats printed no statistics: $out" ;; esac
expect 0 "$run" /bin/true
[ -z "$out" ] || fail "output without --stats: $out"
expect 0 "$run" --stats --verbose sh -c 'echo "$SHARDALLOC_SHOW_STATS $SHARDALLOC_VERBOSE"'
grep -qx "1 1" <<<"$out" || fail "--stats --verbose: $out"
case $out in *"shardalloc: options: show_stats=1 verbose=1"*) ;; *) fail "--verbose printed no options: $out" ;; esac

step "LD_PRELOAD: appended, only for the command"
# An existing preload that defines no malloc (it would come first and win): libm.
libm=$(dirname "$(ldd /bin/true | awk '/libc\.so/ {print $3; exit}')")/libm.so.6
[ -e "$libm" ] || fail "no $libm"
expect 0 env LD_PRELOAD="$libm" "$run" sh -c 'printf %s "$LD_PRELOAD"'
[ "$out" = "$libm:$lib" ] || fail "LD_PRELOAD=$out, want $libm:$lib"
expect 0 env LD_PRELOAD="$libm" "$run" "$CHECK"
case $out in *"is shardalloc's"*) ;; *) fail "with another preload: $out" ;; esac
expect 0 env LD_PRELOAD="$lib" "$run" sh -c 'printf %s "$LD_PRELOAD"'
[ "$out" = "$lib" ] || fail "added twice: $out"
expect 2 env LD_PRELOAD="$work/x/libshardalloc-other.so" "$run" /bin/true
case $out in *"another shardalloc library"*) ;; *) fail "two shardalloc libraries: $out" ;; esac
[ -z "${LD_PRELOAD:-}" ] || fail "LD_PRELOAD leaked into this shell"

step "usage errors, not found"
expect 2 "$run"
expect 2 "$run" --bogus /bin/true
expect 0 "$run" --help
expect 127 "$run" /nonexistent/program
expect 0 "$run" --print-lib
[ "$out" = "$lib" ] || fail "--print-lib: $out"

step "the source tree's copy: SHARDALLOC_LIB_DIR, ../build"
expect 0 env SHARDALLOC_LIB_DIR="$BUILD" "$SRC/tools/shardalloc-run" "$CHECK"
case $out in *"is shardalloc's"*) ;; *) fail "SHARDALLOC_LIB_DIR: $out" ;; esac
expect 127 env SHARDALLOC_LIB_DIR="$work/none" "$SRC/tools/shardalloc-run" /bin/true
mkdir -p "$work/src/tools"
cp "$SRC/tools/shardalloc-run" "$work/src/tools/"
ln -s "$BUILD" "$work/src/build"
expect 0 "$work/src/tools/shardalloc-run" --print-lib
[ "$out" = "$lib" ] || fail "tools/../build: $out"
# Through a symbolic link to the script (e.g. in ~/bin): found from where it points.
ln -s "$work/src/tools/shardalloc-run" "$work/link-to-run"
expect 0 "$work/link-to-run" "$CHECK"
case $out in *"is shardalloc's"*) ;; *) fail "through a symlink: $out" ;; esac

step "installed-like layouts: ../lib/<multiarch> (SONAME file), ../lib"
so_name=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ -n "$so_name" ] || fail "libshardalloc.so has no SONAME"
for libdir in "lib/$(uname -m)-linux-gnu" lib; do
  p=$work/prefix-${libdir//\//-}
  mkdir -p "$p/bin" "$p/$libdir"
  cp "$SRC/tools/shardalloc-run" "$p/bin/"
  cp "$lib" "$p/$libdir/$so_name"   # only the SONAME file, as the runtime package has
  expect 0 "$p/bin/shardalloc-run" "$CHECK"
  case $out in *"is shardalloc's, from $p/$libdir/$so_name"*) ;; *) fail "$libdir: $out" ;; esac
done
expect 127 "$work/prefix-lib/bin/shardalloc-run" --checked /bin/true

echo "PASS: shardalloc-run"
