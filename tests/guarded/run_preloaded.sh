#!/bin/sh
# Guarded sampling through the malloc override (label `guarded`):
#   run_preloaded.sh bugs <libshardalloc.so> <sampled_bug>
#     a 1-byte overflow and a use after free of a block the sampling picked,
#     10 runs per size and bug: every run must be stopped with the report,
#     whose allocation site is in the program.
#   run_preloaded.sh python <libshardalloc.so> <py_workload.py>
#     python3 (PYTHONMALLOC=malloc: every object from us) at the suggested
#     production rate, then at 64 KiB with the heap profiler on (64 KiB):
#     runs clean, with no report.
set -u
mode=$1
lib=$2
prog=$3
fail=0
if [ "$mode" = bugs ]; then
  for bug in overflow uaf; do
    for size in 24 100 1000 3000; do
      case $bug in overflow) want="heap buffer overflow" ;; uaf) want="use after free" ;; esac
      i=0
      while [ $i -lt 10 ]; do
        out=$(SHARDALLOC_GUARDED_RATE=65536 LD_PRELOAD=$lib "$prog" $bug $size 2>&1)
        rc=$?
        # The report names the bug, and the allocation site in the program (not in the library).
        if [ $rc -ne 134 ] || ! printf '%s\n' "$out" | grep -q "shardalloc: fatal: guarded: $want" ||
          ! printf '%s\n' "$out" | grep -q "allocated at 0x[0-9a-f]* in .*guarded_sampled_bug"; then
          echo "FAIL: $bug of $size bytes, run $i: exit $rc"
          printf '%s\n' "$out"
          fail=1
        fi
        i=$((i + 1))
      done
      echo "$bug $size: 10 runs checked"
    done
  done
  # The same program without a bug survives.
  SHARDALLOC_GUARDED_RATE=65536 LD_PRELOAD=$lib "$prog" clean 100 || { echo "FAIL: clean run"; fail=1; }
  exit $fail
fi
if [ "$mode" = python ]; then
  # At the suggested rate; then far more often, with the heap profiler on too.
  for rates in "16777216 0" "65536 65536"; do
    set -- $rates
    out=$(SHARDALLOC_GUARDED_RATE=$1 SHARDALLOC_PROFILE_RATE=$2 PYTHONMALLOC=malloc LD_PRELOAD=$lib \
      python3 "$prog" 1 0.3 2>&1)
    rc=$?
    printf 'guarded rate %s, profile rate %s: %s\n' $1 $2 "$out"
    if [ $rc -ne 0 ] || printf '%s\n' "$out" | grep -q "shardalloc:"; then
      echo "FAIL: exit $rc"
      fail=1
    fi
  done
  exit $fail
fi
exit 2
