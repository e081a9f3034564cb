#!/bin/bash
# git under LD_PRELOAD (its helpers inherit it: pack-objects, repack, ...):
# a temporary repository with three commits, then log / show / diff / grep /
# gc / fsck, each output checked.
set -u
HERE=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh" || { echo "FAIL: cannot load $HERE/common.sh"; exit 1; }
need git
make_scratch git

export HOME="$SCRATCH" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=tester@example.invalid
export GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=tester@example.invalid
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
export LD_PRELOAD="$SHARDALLOC_LIB"
G() { timeout 60 git -C "$SCRATCH/repo" "$@"; }

timeout 60 git init -q -b main "$SCRATCH/repo" || fail "git init"
# The alias runs a shell whose parent is git: git itself has shardalloc mapped.
# shellcheck disable=SC2016 # $PPID is for the alias's shell
mapped=$(G -c alias.maps='!grep -c libshardalloc /proc/$PPID/maps' maps 2>&1)
[ "${mapped:-0}" -gt 0 ] 2>/dev/null || fail "git does not run with libshardalloc.so mapped ($mapped)"

# Commit 1: 300 files in 10 directories.
for d in $(seq 0 9); do
  mkdir -p "$SCRATCH/repo/dir$d"
  for f in $(seq 0 29); do
    printf 'file %d/%d\n%s\n' "$d" "$f" "$(seq -s ' ' 1 $((f * 10)))" >"$SCRATCH/repo/dir$d/f$f.txt"
  done
done
G add -A && G commit -q -m "first: 300 files" || fail "commit 1"
# Commit 2: change 100 files.
for d in 0 1 2 3 4; do
  for f in $(seq 0 19); do echo "changed $d/$f" >>"$SCRATCH/repo/dir$d/f$f.txt"; done
done
G commit -q -am "second: 100 changes" || fail "commit 2"
# Commit 3: delete a directory, rename another.
G rm -q -r dir9 && G mv dir8 renamed && G commit -q -m "third: delete and rename" || fail "commit 3"

[ "$(G rev-list --count HEAD)" = 3 ] || fail "rev-list --count"
[ "$(G log --oneline | wc -l)" = 3 ] || fail "git log --oneline"
[ "$(G log --format=%s | head -1)" = "third: delete and rename" ] || fail "git log subject"
[ "$(G ls-files | wc -l)" = 270 ] || fail "ls-files count"
[ "$(G diff --name-only HEAD~2 HEAD~1 | wc -l)" = 100 ] || fail "diff HEAD~2 HEAD~1"
[ "$(G show HEAD~1:dir3/f7.txt | tail -1)" = "changed 3/7" ] || fail "git show"
[ "$(G grep -l 'changed 4/' | wc -l)" = 20 ] || fail "git grep"
# 300 added + 100 changed + 30 deleted + 30 renamed
[ "$(G log -p | grep -c '^diff --git')" = 460 ] || fail "git log -p diff count"
G gc --quiet --aggressive || fail "git gc"
G fsck --strict --no-progress 2>&1 | grep -v '^$' && fail "git fsck reported problems"
packed=$(G count-objects -v | awk '/^in-pack:/ {print $2}')
[ "${packed:-0}" -gt 300 ] || fail "objects not packed after gc (in-pack: ${packed:-none})"
[ "$(G count-objects -v | awk '/^count:/ {print $2}')" = 0 ] || fail "loose objects left after gc"
[ "$(G status --porcelain | wc -l)" = 0 ] || fail "work tree not clean"
echo "PASS: git (3 commits, log/show/diff/grep, gc: $packed objects packed, fsck clean) under shardalloc"
