#!/bin/sh
# Runs one program of tests/security and prints what became of its bug.
#   run-one.sh <library to preload, or - for none> <program> [caught|not_caught]
# Outcome: "caught" (stopped by a signal, or SANITIZED), "not_caught"
# (NOT_CAUGHT printed), "error" (anything else: an exit status, a timeout).
# With an expectation, exits 0 when the outcome matches it, 1 otherwise.
lib=$1
prog=$2
expect=$3
ulimit -c 0
err=$(mktemp)
if [ "$lib" = - ]; then
  out=$(timeout 60 "$prog" 2>"$err")
else
  out=$(LD_PRELOAD=$lib timeout 60 "$prog" 2>"$err")
fi
status=$?
case "$out" in
  *NOT_CAUGHT*) outcome=not_caught ;;
  *SANITIZED*) outcome=caught ;;
  *) if [ $status -gt 128 ] && [ $status -ne 124 ]; then outcome=caught; else outcome=error; fi ;;
esac
why=$(head -c 300 "$err" | head -n 1)
rm -f "$err"
echo "$outcome (status $status) ${why}"
[ -z "$expect" ] && exit 0
[ "$outcome" = "$expect" ] && exit 0
if [ "$outcome" = caught ]; then
  echo "now caught: move it to the caught list of tests/security/expected.txt"
fi
exit 1
