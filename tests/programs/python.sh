#!/bin/bash
# python3 running tests/programs/python_workload.py under LD_PRELOAD, twice:
# with Python's own small-object allocator (pymalloc) and with
# PYTHONMALLOC=malloc (every object through malloc).
set -u
HERE=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh" || { echo "FAIL: cannot load $HERE/common.sh"; exit 1; }
need python3

for mode in default malloc; do
  if [ "$mode" = malloc ]; then export PYTHONMALLOC=malloc; else unset PYTHONMALLOC; fi
  out=$(preloaded timeout 120 python3 "$HERE/python_workload.py" 2>&1)
  rc=$?
  echo "$out"
  [ $rc -eq 0 ] || fail "python3 workload (PYTHONMALLOC=$mode) exited with status $rc"
  echo "$out" | grep -q "^python workload: OK" || fail "python3 workload (PYTHONMALLOC=$mode) did not report OK"
done
echo "PASS: python3 workload under shardalloc"
