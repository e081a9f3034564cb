#!/usr/bin/env bash
# Runs the libFuzzer target for a fixed time from the seed corpus (the CTest
# test fuzz.shardalloc, label `fuzz`). Usage:
#   fuzz/run-fuzz.sh FUZZER SECONDS WORK_CORPUS ARTIFACT_DIR SEED_CORPUS... [-- libFuzzer flags]
# New inputs go to WORK_CORPUS (kept between runs); a crashing input is saved
# in ARTIFACT_DIR as crash-<sha1> (reproduce: FUZZER ARTIFACT_DIR/crash-...).
set -euo pipefail
fuzzer=$1 seconds=$2 work=$3 artifacts=$4
shift 4
seeds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do seeds+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
mkdir -p "$work" "$artifacts"
# The work corpus is kept between runs; libFuzzer replays all of it before
# fuzzing (inside -max_total_time). Past 1500 inputs, merge it down to the
# inputs that add coverage, so a run keeps most of its time for fuzzing.
if [ "$(find "$work" -type f | wc -l)" -gt 1500 ]; then
  rm -rf "$work.merged" && mkdir -p "$work.merged"
  "$fuzzer" -merge=1 -timeout=30 -rss_limit_mb=3072 "$work.merged" "$work" >/dev/null 2>&1 || true
  if [ "$(find "$work.merged" -type f | wc -l)" -gt 0 ]; then
    rm -rf "$work" && mv "$work.merged" "$work"
  fi
  rm -rf "$work.merged"
  echo "run-fuzz: work corpus merged down to $(find "$work" -type f | wc -l) inputs"
fi
# -timeout: one input running 30 s is a hang. -rss_limit_mb: the allocator's
# own memory counts too (live blocks are capped at 96 MiB by the target).
exec "$fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=30 -rss_limit_mb=3072 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" "$work" "${seeds[@]}"
