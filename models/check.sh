#!/usr/bin/env bash
# Exhaustive verification of the lock-free protocol models (models/*.pml,
# docs/reliability.md) with spin: for each configuration, spin -a, gcc pan,
# a full state-space search (safety: assertions and invalid end states, i.e.
# deadlocks or lost wake-ups that leave a thread waiting forever). Fails on any
# error or an incomplete search; prints the state counts.
#
# Then the mutants: the same models with one protocol rule broken on purpose;
# each must be caught (an error found), or the model is not checking what it
# claims to.
#
#   models/check.sh            CI set (~5 min on one core, < 1.5 GB)
#   models/check.sh --deep     bigger configurations (~15 min, up to ~6 GB)
#   models/check.sh --no-mutants | --mutants-only
#   models/check.sh --only NAME[,NAME...] | --skip NAME[,NAME...]
# --only and --skip pick configurations by the names printed (the CTest
# tests model.protocols.* split the CI set this way, so that ctest -j runs
# the parts side by side).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deep=0 mutants=1 passes=1 only= skip=
usage() { echo "usage: $0 [--deep] [--no-mutants | --mutants-only] [--only NAMES | --skip NAMES]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --deep) deep=1 ;;
    --no-mutants) mutants=0 ;;
    --mutants-only) passes=0 ;;
    --only) [ $# -ge 2 ] || usage; only=",$2,"; shift ;;
    --skip) [ $# -ge 2 ] || usage; skip=",$2,"; shift ;;
    *) usage ;;
  esac
  shift
done

if ! command -v spin >/dev/null; then
  echo "check.sh: spin not found; installing the Debian package spin"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  { $SUDO apt-get install -y -qq --no-install-recommends spin || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends spin; }; } >/dev/null
fi
command -v spin >/dev/null || { echo "check.sh: FAIL: spin is not available" >&2; exit 1; }
command -v gcc >/dev/null || { echo "check.sh: FAIL: gcc is not available" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/*.pml "$work"/

# Memory for pan: capped, so a model that grows by mistake fails instead of
# eating the machine (COLLAPSE compression keeps the CI set near 1.1 GB).
mem_mb=$(( deep ? 6000 : 3000 ))
failures=0 verified=0

# verify NAME EXPECT MODEL [spin -D flags...]; EXPECT is pass or fail (mutants).
verify() {
  local name=$1 expect=$2 model=$3
  shift 3
  [ "$expect" = pass ] && [ $passes = 0 ] && return
  [ -n "$only" ] && [[ $only != *",$name,"* ]] && return
  [ -n "$skip" ] && [[ $skip == *",$name,"* ]] && return
  verified=$((verified + 1))
  local dir="$work/$name"
  mkdir -p "$dir"
  cp "$work"/*.pml "$dir"/
  local t0=$SECONDS
  (
    cd "$dir"
    spin -a "$@" "$model" >spin.out 2>&1 || { cat spin.out; exit 3; }
    # gcc -O2 halves a search's time but takes 23 s on notify.pml's pan.c
    # and 82 s on abandon.pml's (for a 7 s search of 4 million states): a
    # caller asks for it (OPT=-O2) where the search is long enough to pay.
    local opt=${OPT:--O0}
    [ "$expect" = fail ] && opt=-O0  # a mutant's search stops at its first error
    gcc -w $opt -DSAFETY -DCOLLAPSE -DMEMLIM=$mem_mb -o pan pan.c
    ulimit -v $(( (mem_mb + 512) * 1024 ))
    local hash=-w20
    [ "$expect" = pass ] && hash=-w25
    ./pan -m2000000 $hash >pan.out 2>&1 || true
  ) || { echo "model $name: FAIL (spin or gcc failed)"; failures=$((failures + 1)); return; }
  local out="$dir/pan.out"
  local errors states depth
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
  depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | tail -1)
  local secs=$((SECONDS - t0))
  if [ -z "$errors" ]; then
    echo "model $name: FAIL (pan did not finish)"; tail -5 "$out"; failures=$((failures + 1)); return
  fi
  if grep -q "max search depth too small\|reached -DMEMLIM bound\|out of memory" "$out"; then
    echo "model $name: FAIL (search incomplete: depth or memory bound)"; failures=$((failures + 1)); return
  fi
  if [ "$expect" = pass ]; then
    if [ "$errors" = 0 ]; then
      echo "model $name: OK, $states states, depth $depth, 0 errors (${secs} s)"
    else
      echo "model $name: FAIL, $errors error(s):"
      grep -E "pan:[0-9]+:|violated|invalid end state" "$out" | head -5
      (cd "$dir" && spin -t -p -g -l "$@" "$model" 2>&1 | tail -60) || true
      failures=$((failures + 1))
    fi
  else
    if [ "$errors" != 0 ]; then
      echo "mutant $name: caught ($(grep -m1 -oE 'assertion violated.*\(at|invalid end state' "$out" | sed 's/ (at$//'), ${secs} s)"
    else
      echo "mutant $name: FAIL, not caught ($states states): the model does not check what it claims"
      failures=$((failures + 1))
    fi
  fi
}

if [ $deep = 1 ]; then
  export OPT=-O2
  verify notify-2remotes pass notify.pml -DNREMOTE=2 -DALLOCS=6
  verify notify-1remote pass notify.pml -DNREMOTE=1 -DALLOCS=10
  verify notify-3pages pass notify.pml -DNREMOTE=1 -DNP=3 -DNB=1 -DALLOCS=6
  # (creator 3 allocations with a sweeper, or 4 without: more than 120
  # million states, beyond the 6 GB bound)
  verify abandon-3allocs-nosweep pass abandon.pml -DA1=3 -DSWEEPS=0
  verify abandon-2sweeps pass abandon.pml -DA1=2 -DSWEEPS=2
  verify lifetime-5threads pass lifetime.pml -DNT=5 -DREUSE
  verify fork-gate-3threads pass fork.pml -DNT=3 -DSTEPS=3 -DFORKS=3
else
  # Each configuration reaches states no smaller one does (pan's
  # "unreached" lists: 4 allocations with 2 remotes leave 69 more of the
  # Remote's states unreached than 5; 3 allocations without a sweeper reach
  # the owner's collections that 2 with one do not); 1 remote with 6
  # allocations reaches what 8 do.
  OPT=-O2 verify notify-2remotes pass notify.pml -DNREMOTE=2 -DALLOCS=5
  verify notify-1remote pass notify.pml -DNREMOTE=1 -DALLOCS=6
  verify abandon pass abandon.pml -DA1=2
  verify abandon-3allocs-nosweep pass abandon.pml -DA1=3 -DSWEEPS=0
  # The adopter borrows the heap instead (Domain::alloc_borrowed: a handler's allocation).
  verify abandon-borrow pass abandon.pml -DA1=1 -DBORROW
  verify lifetime pass lifetime.pml -DNT=4 -DREUSE
  verify fork-gate pass fork.pml -DNT=3 -DSTEPS=2 -DFORKS=2
fi
verify add-memory pass add_memory.pml
verify fork-gate-concurrent pass fork_concurrent.pml -DNT=3 -DSTEPS=2

if [ $mutants = 1 ]; then
  # Each breaks one rule of docs/protocols.md; the assertion that catches it is printed.
  verify free-notified-page fail notify.pml -DNREMOTE=1 -DALLOCS=4 -DMUTANT_FREE_NOTIFIED_PAGE
  verify full-with-blocks fail notify.pml -DNREMOTE=1 -DALLOCS=4 -DMUTANT_FULL_WITH_BLOCKS
  verify no-notify fail notify.pml -DNREMOTE=1 -DALLOCS=4 -DMUTANT_NO_NOTIFY
  verify no-notify-end-check-only fail notify.pml -DNREMOTE=1 -DALLOCS=4 -DMUTANT_NO_NOTIFY -DNO_REST_CHECKS
  verify nonatomic-own fail abandon.pml -DA1=1 -DMUTANT_NONATOMIC_OWN
  verify give-up-no-recheck fail abandon.pml -DA1=1 -DMUTANT_GIVE_UP_NO_RECHECK
  verify notify-no-owner-check fail abandon.pml -DA1=1 -DMUTANT_NOTIFY_NO_OWNER_CHECK
  verify seal-count-high fail abandon.pml -DA1=1 -DMUTANT_SEAL_COUNT_HIGH
  verify adopt-sealed fail abandon.pml -DA1=1 -DMUTANT_ADOPT_SEALED
  verify borrow-plain-give-back fail abandon.pml -DA1=1 -DBORROW -DMUTANT_BORROW_PLAIN_GIVE_BACK
  verify destroy-no-wait fail lifetime.pml -DNT=2 -DMUTANT_NO_WAIT
  verify pin-ignores-generation fail lifetime.pml -DNT=2 -DREUSE -DMUTANT_PIN_IGNORES_GENERATION
  verify pin-while-dying fail lifetime.pml -DNT=2 -DREUSE -DMUTANT_PIN_WHILE_DYING
  verify fork-no-wait fail fork.pml -DMUTANT_FORK_NO_WAIT
  verify step-counted-late fail fork.pml -DMUTANT_COUNT_AFTER_ENTRY
  verify step-uncounted-early fail fork.pml -DMUTANT_UNCOUNT_EARLY
  verify step-no-recheck fail fork.pml -DMUTANT_NO_RECHECK
  verify prepares-overlap fail fork_concurrent.pml -DMUTANT_NO_PREPARE_LOCK
  verify add-memory-no-scan fail add_memory.pml -DMUTANT_NO_SCAN
  verify add-memory-arenas-first fail add_memory.pml -DMUTANT_ARENAS_FIRST
  verify add-memory-give-back-early fail add_memory.pml -DMUTANT_GIVE_BACK_EARLY
fi

if [ $failures != 0 ]; then
  echo "check.sh: FAIL ($failures)"
  exit 1
fi
if [ $verified = 0 ]; then
  echo "check.sh: FAIL: no configuration matches the options"
  exit 1
fi
echo "check.sh: all $verified selected configurations verified"
