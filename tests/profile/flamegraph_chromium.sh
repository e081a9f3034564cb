#!/usr/bin/env bash
# Headless Chromium renders the flame graphs profile.flamegraph wrote
# (tests/profile/CMakeLists.txt), as heapmap.chromium does for heap maps:
# the browser's DOM has every box of the file, and the screenshot is the
# size of the picture and far from blank. Exit 77 (skipped) without chromium
# (or with SHARDALLOC_CHROMIUM=none).
#   flamegraph_chromium.sh OUTDIR
set -uo pipefail
out=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
browser=${SHARDALLOC_CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$browser" ] && [ -x "$browser" ] || skip "chromium is not installed (apt-get install chromium)"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-quic --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile")
for s in sites-mid python-mid; do
  svg=$out/$s.svg
  [ -f "$svg" ] || fail "$svg missing (profile.flamegraph makes it)"
  width=$(grep -o '<svg [^>]*width="[0-9]*"' "$svg" | head -1 | sed 's/.*width="\([0-9]*\)"/\1/')
  height=$(grep -o '<svg [^>]*height="[0-9]*"' "$svg" | head -1 | sed 's/.*height="\([0-9]*\)"/\1/')
  [ "${height:-0}" -gt 0 ] && [ "${width:-0}" -gt 0 ] || fail "$s.svg: no picture size"
  # An HTML page around the picture, so the screenshot has the picture's size.
  page=$profile/$s.html
  printf '<!DOCTYPE html><html><body style="margin:0"><img src="file://%s"></body></html>\n' "$svg" >"$page"
  want=$(grep -o '<rect' "$svg" | wc -l)
  got=$(timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$svg" 2>/dev/null | grep -o '<rect' | wc -l)
  [ "$got" -eq "$want" ] || fail "$s.svg: chromium's DOM has $got rects, the file $want"
  rm -f "$out/$s.png"
  timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size="$width,$height" \
    --screenshot="$out/$s.png" "file://$page" >/dev/null 2>&1 || fail "chromium could not screenshot $s.svg"
  [ -s "$out/$s.png" ] || fail "no screenshot $out/$s.png"
  dims=$(python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print('%dx%d' % struct.unpack('>II', d[16:24]))" "$out/$s.png")
  [ "$dims" = "${width}x$height" ] || fail "$s.png is $dims, not ${width}x$height"
  echo '<!DOCTYPE html><html><body style="margin:0;background:#fff"></body></html>' >"$profile/blank.html"
  timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size="$width,$height" \
    --screenshot="$profile/blank.png" "file://$profile/blank.html" >/dev/null 2>&1
  size=$(stat -c %s "$out/$s.png") blank=$(stat -c %s "$profile/blank.png")
  [ "$size" -gt $((10 * blank)) ] || fail "$s.png looks blank ($size bytes; a blank page: $blank)"
  echo "$s.png: $dims, $size bytes (blank page: $blank), $got rects in the DOM"
done
echo "PASS: flame graphs render in $browser"
