#!/usr/bin/env bash
# The heap map on a real run (tests/heapmap/CMakeLists.txt).
#   heapmap_test.sh run LIBSHARDALLOC OUTDIR
#     python3 (PYTHONMALLOC=malloc, LD_PRELOAD=libshardalloc.so) runs
#     workload.py, which writes a snapshot mid-run through the C API;
#     SHARDALLOC_SNAPSHOT=OUTDIR/exit-%p.txt adds one at exit. Both are checked
#     and rendered with tools/shardalloc-heapmap to OUTDIR/{mid,exit}.html.
#   heapmap_test.sh screenshot OUTDIR
#     headless Chromium renders both pages to OUTDIR/{mid,exit}.png, checks the
#     browser parsed every element and that the picture is not blank.
#     Exit 77 (skipped) when chromium is not installed (or SHARDALLOC_CHROMIUM=none).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOOL=$HERE/../../tools/shardalloc-heapmap
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# The interpreter itself, not a wrapper script (pyenv shims would run, and
# snapshot, a dozen shell processes under the preload as well).
real_python() { python3 -c 'import sys; print(sys.executable)'; }

field() {  # field FILE RECORD KEY: the values of KEY on lines starting with RECORD
  awk -v rec="$2" -v key="$3" '$1 == rec { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$1"
}

check_snapshot() {  # check_snapshot FILE WHAT
  local f=$1
  head -1 "$f" | grep -q "^shardalloc-snapshot 1 domain=process " || fail "$2: no snapshot header"
  tail -1 "$f" | grep -q "^end " || fail "$2: no end line (truncated)"
  [ "$(grep -c '^arena ' "$f")" -ge 1 ] || fail "$2: no arena"
  [ "$(grep -c '^heap ' "$f")" -ge 5 ] || fail "$2: fewer than 5 heaps (main thread + 4 workers)"
  grep -q '^slot .* kind=small ' "$f" || fail "$2: no small segment"
  [ "$(grep -c '^page ' "$f")" -ge 20 ] || fail "$2: fewer than 20 pages"
  # Every slot of every arena is accounted for exactly once.
  local slots claimed free
  slots=$(field "$f" arena slots | awk '{ n += $1 } END { print n + 0 }')
  claimed=$(field "$f" slot span | awk '{ n += $1 } END { print n + 0 }')
  free=$(field "$f" free count | awk '{ n += $1 } END { print n + 0 }')
  [ "$slots" -eq $((claimed + free)) ] || fail "$2: $slots slots, but $claimed claimed + $free free"
}

mode=${1:-}
case "$mode" in
run)
  lib=$2 out=$3
  [ -f "$lib" ] || fail "no library $lib"
  mkdir -p "$out" && rm -f "$out"/*.txt "$out"/*.html "$out"/*.png
  py=$(real_python) || skip "python3 is not installed"
  # env, not the shell, sets the preload: only python3 runs on (and snapshots) shardalloc, not timeout.
  log=$(timeout 120 env SHARDALLOC_SNAPSHOT="$out/exit-%p.txt" PYTHONMALLOC=malloc LD_PRELOAD="$lib" \
        "$py" "$HERE/workload.py" "$out/mid.txt" 2>&1)
  rc=$?
  echo "$log"
  [ $rc -eq 0 ] || fail "workload exited with $rc"
  exits=("$out"/exit-*.txt)
  [ ${#exits[@]} -eq 1 ] && [ -f "${exits[0]}" ] || fail "expected one exit snapshot, found: ${exits[*]}"
  mv "${exits[0]}" "$out/exit.txt"
  check_snapshot "$out/mid.txt" "mid-run snapshot"
  check_snapshot "$out/exit.txt" "exit snapshot"
  # Mid-run, the workload holds a 9 MiB and a 3 MiB buffer: huge blocks.
  big=$(field "$out/mid.txt" slot block_size | sort -n | tail -1)
  [ "${big:-0}" -ge $((9 << 20)) ] || fail "mid-run snapshot: no huge block of 9 MiB (largest: ${big:-none})"
  # After the join the four workers have exited: their heaps are abandoned,
  # with segments that hold the blocks the main thread kept. (At exit those
  # blocks have been freed during the interpreter's shutdown, and whether a
  # sweep released their pages before the exit snapshot depends on timing;
  # the heap records stay abandoned either way.)
  [ "$(grep -c '^heap .* abandoned=1 ' "$out/mid.txt")" -ge 4 ] || fail "mid-run snapshot: fewer than 4 abandoned heaps"
  grep -q '^slot .* abandoned=1 ' "$out/mid.txt" || fail "mid-run snapshot: no segment of an abandoned heap"
  [ "$(grep -c '^heap .* abandoned=1 ' "$out/exit.txt")" -ge 4 ] || fail "exit snapshot: fewer than 4 abandoned heaps"
  for s in mid exit; do
    python3 "$TOOL" "$out/$s.txt" -o "$out/$s.html" || fail "shardalloc-heapmap $s.txt"
    grep -q '</svg>' "$out/$s.html" || fail "$s.html has no picture"
  done
  echo "PASS: snapshots and pictures in $out"
  ;;
screenshot)
  out=$2
  # SHARDALLOC_CHROMIUM: the browser to use (a path; "none" skips).
  browser=${SHARDALLOC_CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
  [ -n "$browser" ] && [ -x "$browser" ] || skip "chromium is not installed (apt-get install chromium)"
  profile=$(mktemp -d)
  trap 'rm -rf "$profile"' EXIT
  # No network: without these flags Chromium keeps trying to reach Google's hosts.
  flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-quic --disable-background-networking
         --disable-component-update --disable-sync --user-data-dir="$profile")
  shot() {  # shot HTML PNG HEIGHT
    timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size=1300,"$3" --screenshot="$2" "file://$1" \
      >/dev/null 2>&1
  }
  echo '<!DOCTYPE html><html><body style="margin:0;background:#fff"></body></html>' >"$profile/blank.html"
  for s in mid exit; do
    html=$out/$s.html
    [ -f "$html" ] || fail "$html missing (heapmap.python_run makes it)"
    height=$(grep -o '<svg [^>]*height="[0-9]*"' "$html" | head -1 | sed 's/.*height="\([0-9]*\)"/\1/')
    [ "$height" -gt 0 ] 2>/dev/null || fail "$s.html: no picture height"
    [ "$height" -le 16000 ] || height=16000
    # The browser parsed the whole picture: as many elements in its DOM as in the file.
    want=$(grep -o '<rect' "$html" | wc -l)
    got=$(timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$html" 2>/dev/null | grep -o '<rect' | wc -l)
    [ "$got" -eq "$want" ] || fail "$s.html: chromium's DOM has $got rects, the file $want"
    rm -f "$out/$s.png"
    shot "$html" "$out/$s.png" "$height" || fail "chromium could not screenshot $s.html"
    [ -s "$out/$s.png" ] || fail "no screenshot $out/$s.png"
    # PNG header: the size asked for; and far more detail than a blank page of that size.
    dims=$(python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print('%dx%d' % struct.unpack('>II', d[16:24]))" "$out/$s.png")
    [ "$dims" = "1300x$height" ] || fail "$s.png is $dims, not 1300x$height"
    shot "$profile/blank.html" "$profile/blank.png" "$height"
    size=$(stat -c %s "$out/$s.png") blank=$(stat -c %s "$profile/blank.png")
    [ "$size" -gt $((20 * blank)) ] || fail "$s.png looks blank ($size bytes; a blank page: $blank)"
    echo "$s.png: $dims, $size bytes (blank page: $blank), $got rects rendered"
  done
  echo "PASS: heap maps render in $browser: $out/mid.png $out/exit.png"
  ;;
*)
  echo "usage: $0 run LIBSHARDALLOC OUTDIR | screenshot OUTDIR" >&2
  exit 2
  ;;
esac
