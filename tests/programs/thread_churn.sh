#!/bin/bash
# Thread churn (tests/override/thread_churn.cpp): the same binary on glibc
# (baseline, printed only) and preloaded with shardalloc, whose peak RSS must
# stay under the bound.  Usage: thread_churn.sh THREAD_CHURN_EXE [MAX_RSS_MIB]
set -u
HERE=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh" || { echo "FAIL: cannot load $HERE/common.sh"; exit 1; }
exe=$1
bound=${2:-200}
[ -x "$exe" ] || fail "$exe is not executable"

concurrent=32  # threads alive at a time

env -u LD_PRELOAD timeout 120 "$exe" --concurrent $concurrent || echo "(the glibc baseline run failed with status $?: not counted)"
LD_PRELOAD="$SHARDALLOC_LIB" timeout 120 "$exe" --concurrent $concurrent --expect-shardalloc --max-rss-mib "$bound"
rc=$?
[ $rc -eq 0 ] || fail "thread churn under shardalloc (status $rc)"
echo "PASS: thread churn under shardalloc, peak RSS below $bound MiB"
