# Sourced by the program tests. $SHARDALLOC_LIB: absolute path of libshardalloc.so.
# Exit codes: 0 pass, 1 fail, 77 skip (CTest SKIP_RETURN_CODE).

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
need() {
  for prog in "$@"; do
    command -v "$prog" >/dev/null 2>&1 ||
      skip "$prog is not installed (sh tests/programs/install-deps.sh installs it)"
  done
}

[ -n "${SHARDALLOC_LIB:-}" ] && [ -f "$SHARDALLOC_LIB" ] || fail "SHARDALLOC_LIB='${SHARDALLOC_LIB:-}' is not a file"
case "$SHARDALLOC_LIB" in /*) ;; *) fail "SHARDALLOC_LIB must be an absolute path" ;; esac

# A scratch directory removed at exit (set TEST_KEEP=1 to keep it).
make_scratch() {
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/shardalloc-$1.XXXXXX")
  trap 'on_exit' EXIT
}
on_exit() {
  rc=$?
  if [ -n "${CLEANUP_HOOK:-}" ]; then $CLEANUP_HOOK || true; fi
  if [ -n "${SCRATCH:-}" ] && [ -z "${TEST_KEEP:-}" ]; then rm -rf "$SCRATCH"; fi
  exit $rc
}

# Runs "$@" with shardalloc preloaded.
preloaded() {
  LD_PRELOAD="$SHARDALLOC_LIB" "$@"
}

# Checks that process $1 has libshardalloc.so mapped (the preload was taken).
check_mapped() {
  grep -q "libshardalloc" "/proc/$1/maps" 2>/dev/null || fail "process $1 does not have libshardalloc.so mapped"
}
