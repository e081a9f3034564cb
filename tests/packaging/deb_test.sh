#!/usr/bin/env bash
# The Debian packages round trip (cmake/cpack.cmake):
#   1. cpack -G DEB from the build tree into a temporary directory; the
#      packages' contents, SONAMEs, shlibs and dependencies are checked;
#   2. dpkg -i of both; programs run through the installed
#      /usr/bin/shardalloc-run on the installed libraries (preload_check,
#      --checked, --stats);
#   3. consumers built against the installed files, nothing else on the
#      paths: pkg-config (shardalloc, shardalloc-core --static) and
#      find_package (tests/packaging/consumer), run;
#   4. dpkg -r, then dpkg --purge: nothing is left.
# The packages are purged on any exit (trap), so the machine is left as it
# was. Needs root (dpkg -i): exit 77 (skip) otherwise, and when dpkg is
# missing (not Debian) or a shardalloc package is already installed (not ours
# to touch).
# Usage: deb_test.sh BUILD_DIR SOURCE_DIR CMAKE CPACK C_COMPILER CXX_COMPILER
set -euo pipefail
BUILD=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P)
CMAKE=$3
CPACK=$4
CC=$5
CXX=$6
PACKAGES=(libshardalloc-dev shardalloc)

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
step() { echo "--- $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i installs into /usr)"
command -v dpkg >/dev/null 2>&1 || skip "dpkg is not installed (not a Debian system)"
for tool in dpkg-shlibdeps file readelf pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (tools/install-deps installs dpkg-dev, file, pkgconf)"
done
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
for p in "${PACKAGES[@]}"; do
  if installed "$p" || dpkg-query -W "$p" >/dev/null 2>&1; then
    skip "package $p is already known to dpkg: not touching it (dpkg --purge $p to run this test)"
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/shardalloc-deb.XXXXXX")
we_installed=0
cleanup() {
  local rc=$?
  if [ $we_installed -eq 1 ]; then
    echo "--- cleanup: dpkg --purge ${PACKAGES[*]}"
    dpkg --purge "${PACKAGES[@]}" >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; rc=1; }
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- 1. build and inspect the packages ----------------------------------------------------
step "cpack -G DEB"
"$CPACK" -G DEB --config "$BUILD/CPackConfig.cmake" -B "$work/pkg" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
runtime=$(find "$work/pkg" -maxdepth 1 -name 'shardalloc_*.deb' -print -quit)
dev=$(find "$work/pkg" -maxdepth 1 -name 'libshardalloc-dev_*.deb' -print -quit)
if [ ! -f "$runtime" ] || [ ! -f "$dev" ]; then
  cat "$work/cpack.log"; ls -l "$work/pkg"; fail "packages not made"
fi
for deb in "$runtime" "$dev"; do
  echo "$(basename "$deb"):"
  dpkg-deb -f "$deb" Package Version Architecture Depends Section | sed 's/^/    /'
done
dpkg-deb -c "$runtime" | awk '{print $6, $7, $8}' | sed 's/^/    /'

version=$(dpkg-deb -f "$runtime" Version)
depends=$(dpkg-deb -f "$runtime" Depends)
case $depends in *libc6*) ;; *) fail "runtime Depends has no libc6 (dpkg-shlibdeps): '$depends'" ;; esac
dev_depends=$(dpkg-deb -f "$dev" Depends)
case $dev_depends in *"shardalloc (= $version)"*) ;; *) fail "-dev Depends: '$dev_depends', want shardalloc (= $version)" ;; esac

dpkg-deb -x "$runtime" "$work/runtime"
dpkg-deb -x "$dev" "$work/dev"
libso=$(find "$work/runtime/usr/lib" -name 'libshardalloc.so.*' -type f -print -quit)
[ -n "$libso" ] || fail "runtime package has no libshardalloc.so.<version> file"
libdir=/${libso#"$work/runtime/"}
libdir=${libdir%/*}
soname=$(readelf -d "$libso" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libshardalloc.so.1 ] || fail "SONAME of $libso: '$soname'"
[ -L "$work/runtime$libdir/$soname" ] || fail "no SONAME link $libdir/$soname"
have_checked=0   # a checked (Debug) build has no separate checked library
[ ! -e "$BUILD/libshardalloc-checked.so" ] || have_checked=1
[ $have_checked -eq 0 ] || [ -L "$work/runtime$libdir/libshardalloc-checked.so.1" ] ||
  fail "no $libdir/libshardalloc-checked.so.1"
[ -x "$work/runtime/usr/bin/shardalloc-run" ] || fail "no /usr/bin/shardalloc-run"
[ ! -e "$work/runtime$libdir/libshardalloc.so" ] || fail "runtime package has the development link libshardalloc.so"
for f in "$libdir/libshardalloc.so" "$libdir/libshardalloc_core.a" \
         "$libdir/pkgconfig/shardalloc.pc" "$libdir/cmake/shardalloc/shardalloc-config.cmake" \
         /usr/include/shardalloc/shardalloc.h /usr/include/shardalloc/region.h; do
  [ -e "$work/dev$f" ] || [ -L "$work/dev$f" ] || fail "-dev package has no $f"
done
shlibs=$(dpkg-deb -I "$runtime" shlibs 2>/dev/null) || fail "runtime package has no shlibs file"
echo "    shlibs: $shlibs" | tr '\n' ';'; echo
case $shlibs in *"libshardalloc 1 shardalloc (>= $version)"*) ;; *) fail "shlibs: $shlibs" ;; esac
# (grep -q on a here-string: in a pipe, pipefail would see the writer's SIGPIPE.)
maintscripts=$(dpkg-deb -I "$runtime" postinst 2>/dev/null || true)$(dpkg-deb -I "$runtime" triggers 2>/dev/null || true)
grep -q ldconfig <<<"$maintscripts" || fail "runtime package does not run ldconfig"

# ---- 2. install, run programs through the launcher -------------------------------------------
step "dpkg -i $(basename "$runtime") $(basename "$dev")"
we_installed=1
dpkg -i "$runtime" "$dev" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log"; fail "dpkg -i failed"; }
for p in "${PACKAGES[@]}"; do installed "$p" || fail "$p is not installed after dpkg -i"; done
[ "$(command -v shardalloc-run)" = /usr/bin/shardalloc-run ] || fail "shardalloc-run is not /usr/bin/shardalloc-run"
grep -q "$soname" <<<"$(ldconfig -p)" || fail "$soname is not in the ld.so cache"

"$CC" -O2 -o "$work/preload_check" "$SRC/tests/packaging/preload_check.c" -ldl   # headers from /usr/include
unset LD_PRELOAD SHARDALLOC_SHOW_STATS SHARDALLOC_LIB_DIR
step "shardalloc-run /bin/true; preload_check"
shardalloc-run /bin/true || fail "shardalloc-run /bin/true"
set +e; out=$("$work/preload_check"); rc=$?; set -e
[ $rc -eq 3 ] || fail "preload_check without the launcher: $rc $out"
out=$(shardalloc-run "$work/preload_check") || fail "shardalloc-run preload_check: $out"
echo "$out"
case $out in *"is shardalloc's, from $libdir/$soname (checked: "*) ;; *) fail "not the installed library: $out" ;; esac
if [ $have_checked -eq 1 ]; then
  out=$(shardalloc-run --checked "$work/preload_check") || fail "shardalloc-run --checked preload_check: $out"
  echo "$out"
  case $out in *"from $libdir/libshardalloc-checked.so.1 (checked: yes)"*) ;; *) fail "--checked: $out" ;; esac
fi
# (Not ls or echo: coreutils close stderr at exit, before the statistics are printed.)
out=$(shardalloc-run --stats /bin/true 2>&1) || fail "shardalloc-run --stats /bin/true"
case $out in *"shardalloc: statistics of the process heap"*) ;; *) fail "--stats: $out" ;; esac
echo "$out" | head -3

# ---- 3. consumers against the installed files ----------------------------------------------
step "pkg-config: $(pkg-config --modversion shardalloc): $(pkg-config --cflags --libs shardalloc)"
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH
# shellcheck disable=SC2046  # pkg-config output is a list of words
"$CC" -O2 -o "$work/pc_consumer" "$SRC/tests/packaging/consumer/consumer.c" $(pkg-config --cflags --libs shardalloc) -ldl
grep -q "NEEDED.*\[$soname\]" <<<"$(readelf -d "$work/pc_consumer")" || fail "pc_consumer does not need $soname"
"$work/pc_consumer" "$libdir" || fail "pkg-config consumer"
# shellcheck disable=SC2046
"$CC" -O2 -o "$work/pc_consumer_core" "$SRC/tests/packaging/consumer/consumer_core.c" \
  $(pkg-config --static --cflags --libs shardalloc-core)
"$work/pc_consumer_core" || fail "pkg-config consumer (libshardalloc_core.a)"

step "find_package(shardalloc) from /usr"
"$CMAKE" -S "$SRC/tests/packaging/consumer" -B "$work/consumer-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "consumer project: configure failed"; }
grep "shardalloc 0" "$work/configure.log" || true
grep -q "shardalloc .*: /usr/include" "$work/configure.log" || { cat "$work/configure.log"; fail "find_package did not find /usr"; }
"$CMAKE" --build "$work/consumer-build" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "consumer project: build failed"; }
for exe in consumer consumer_override; do
  "$work/consumer-build/$exe" "$libdir" || fail "find_package consumer $exe"
done
"$work/consumer-build/consumer_core" || fail "find_package consumer_core"
"$work/consumer-build/consumer_cpp" || fail "find_package consumer_cpp"

# ---- 4. remove -----------------------------------------------------------------------------
step "dpkg -r, dpkg --purge"
dpkg -r "${PACKAGES[@]}" >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log"; fail "dpkg -r failed"; }
for f in /usr/bin/shardalloc-run "$libdir/$soname" "$libdir/libshardalloc.so" /usr/include/shardalloc; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
dpkg --purge "${PACKAGES[@]}" >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log"; fail "dpkg --purge failed"; }
we_installed=0
for p in "${PACKAGES[@]}"; do
  ! dpkg-query -W "$p" >/dev/null 2>&1 || fail "dpkg still knows $p after --purge"
done
! grep -q "$soname" <<<"$(ldconfig -p)" || fail "$soname still in the ld.so cache"
echo "PASS: Debian packages (build, install, run, consume, remove)"
