#!/usr/bin/env python3
"""Allocation-heavy Python workload for bench/run (rows `python`, `python-malloc`).

    python3 bench/py_workload.py [threads] [scale]

Plain CPython code that creates and drops many small and medium objects:
dicts of str keys, lists and tuples, string building and splitting, small
class instances, sorting, and a JSON round trip. Run under each allocator
with LD_PRELOAD: with PYTHONMALLOC=malloc (row `python-malloc`) every object
comes from the allocator under test; with CPython's default pymalloc (row
`python`) only blocks above 512 bytes and pymalloc's own arenas do, which is
what a Python user actually gets.

`threads` is accepted for the runner's sake and ignored (the GIL would
serialise threads anyway). scale 1.0 is about 1.5-3 s with glibc. Every
round checks its results against values computed another way and the script
exits with status 3 on a mismatch, like the C++ workloads. Prints one line:
    python: threads=1 scale=1 ops=... time=...s mops/s=... vmhwm_kib=...
"""

import json
import random
import sys
import time


class Node:
    __slots__ = ("key", "value", "children")

    def __init__(self, key, value):
        self.key = key
        self.value = value
        self.children = []


class Record:
    def __init__(self, name, tags, score):
        self.name = name
        self.tags = tags
        self.score = score


def fail(what):
    print("python: corrupt: %s" % what, file=sys.stderr)
    sys.exit(3)


def words(rng, n):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(n)]


def round_dicts(rng, vocab, n):
    """Word counting in a dict, then the same with sorted groups."""
    text = [rng.choice(vocab) for _ in range(n)]
    counts = {}
    for w in text:
        counts[w] = counts.get(w, 0) + 1
    if sum(counts.values()) != n:
        fail("dict counts")
    by_len = {}
    for w, c in counts.items():
        by_len.setdefault(len(w), []).append((c, w))
    for group in by_len.values():
        group.sort(reverse=True)
    if sum(c for g in by_len.values() for c, _ in g) != n:
        fail("grouped counts")
    return len(counts)


def round_strings(rng, vocab, n):
    """Build lines, join, split, format, replace."""
    lines = []
    for i in range(n):
        k = rng.randint(3, 9)
        lines.append(" ".join(rng.choice(vocab) for _ in range(k)) + " #%d" % i)
    blob = "\n".join(lines)
    back = blob.split("\n")
    if len(back) != n or back[-1] != lines[-1]:
        fail("string join/split")
    upper = [s.upper().replace("#", "no.") for s in back]
    total = sum(len(s) for s in upper)
    if total != len(blob) - (n - 1) + 2 * n:
        fail("string lengths")
    return n


def round_objects(rng, vocab, n):
    """A tree of small objects and a list of records, sorted and filtered."""
    root = Node("root", 0)
    nodes = [root]
    for i in range(n):
        parent = nodes[rng.randrange(len(nodes))]
        child = Node(rng.choice(vocab), i)
        parent.children.append(child)
        nodes.append(child)
    # walk it back without recursion
    seen, stack = 0, [root]
    while stack:
        node = stack.pop()
        seen += 1
        stack.extend(node.children)
    if seen != n + 1:
        fail("tree walk")
    recs = [Record(rng.choice(vocab), {rng.choice(vocab) for _ in range(3)}, rng.random()) for _ in range(n // 2)]
    recs.sort(key=lambda r: (r.name, -r.score))
    kept = [r for r in recs if len(r.tags) >= 2]
    if any(a.name > b.name for a, b in zip(recs, recs[1:])):
        fail("record sort")
    return len(kept)


def round_json(rng, vocab, n):
    """Nested lists and dicts through a JSON round trip."""
    doc = [{"id": i, "name": rng.choice(vocab), "vals": [rng.randint(0, 999) for _ in range(rng.randint(0, 8))],
            "meta": {"a": rng.choice(vocab), "b": [rng.choice(vocab) for _ in range(2)]}} for i in range(n)]
    text = json.dumps(doc)
    back = json.loads(text)
    if back != doc:
        fail("json round trip")
    return len(text)


def main(argv):
    threads = int(argv[1]) if len(argv) > 1 else 1
    scale = float(argv[2]) if len(argv) > 2 else 1.0
    if threads < 1 or not scale > 0:
        print("usage: py_workload.py [threads] [scale]", file=sys.stderr)
        return 2
    # scale 1.0 = 4 rounds; below 0.25 one round with proportionally fewer objects
    work = 4 * scale
    rounds = max(1, round(work))
    size = min(1.0, work)
    rng = random.Random(4141)
    vocab = words(rng, 20000)
    t0 = time.perf_counter()
    ops = 0
    for _ in range(rounds):
        ops += round_dicts(rng, vocab, max(100, int(60000 * size)))
        ops += round_strings(rng, vocab, max(100, int(12000 * size)))
        ops += round_objects(rng, vocab, max(100, int(30000 * size)))
        ops += round_json(rng, vocab, max(100, int(6000 * size)))
    secs = time.perf_counter() - t0
    hwm = -1
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    print("python: threads=%d scale=%g ops=%d time=%.3fs mops/s=%.2f vmhwm_kib=%d" % (
        threads, scale, ops, secs, ops / secs / 1e6 if secs > 0 else 0.0, hwm))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
