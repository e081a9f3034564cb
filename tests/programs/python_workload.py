"""A Python workload run under LD_PRELOAD=libshardalloc.so (tests/programs/python.sh).

Dicts, lists, strings, bytes, json and threads, every result checked against
an answer known in advance. Exits 0 and prints "python workload: OK" when all
is right; any mismatch raises (exit 1). Run it with PYTHONMALLOC=malloc as
well, so that every Python object goes through malloc, not only large ones.
WORKLOAD_NO_OVERRIDE_CHECK=1 skips the check that malloc is shardalloc's
(to run the same workload on glibc for comparison).
"""
import ctypes
import ctypes.util
import gc
import json
import os
import queue
import random
import sys
import threading
import time


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_override():
    """malloc is shardalloc's: shard_malloc is global and a 100-byte block has the 112-byte class."""
    proc = ctypes.CDLL(None)
    check(hasattr(proc, "shard_malloc"), "shard_malloc not found: is libshardalloc.so preloaded?")
    proc.malloc.restype = ctypes.c_void_p
    proc.malloc.argtypes = [ctypes.c_size_t]
    proc.malloc_usable_size.restype = ctypes.c_size_t
    proc.malloc_usable_size.argtypes = [ctypes.c_void_p]
    proc.free.argtypes = [ctypes.c_void_p]
    p = proc.malloc(100)
    usable = proc.malloc_usable_size(p)
    proc.free(p)
    check(usable == 112, "malloc_usable_size(malloc(100)) = %d, not shardalloc's 112" % usable)


def dicts_and_lists():
    n = 200_000
    d = {"key-%d" % i: i * i for i in range(n)}
    check(len(d) == n, "dict size")
    check(sum(d.values()) == sum(i * i for i in range(n)), "dict values")
    for i in range(0, n, 2):
        del d["key-%d" % i]
    check(len(d) == n // 2, "dict after deletes")
    check(d["key-199999"] == 199999 * 199999, "dict lookup")
    lst = [str(i) * (i % 7) for i in range(n)]
    lst.sort(key=len)
    check(len(lst[-1]) == 36 and all(len(a) <= len(b) for a, b in zip(lst, lst[1:])), "sorted list")
    nested = [[j for j in range(i % 50)] for i in range(20_000)]
    check(sum(len(x) for x in nested) == sum(i % 50 for i in range(20_000)), "nested lists")
    s = set(range(0, 100_000, 3)) & set(range(0, 100_000, 5))
    check(len(s) == len(range(0, 100_000, 15)), "set intersection")
    del d, lst, nested, s


def strings_and_bytes():
    parts = ["w%05d" % i for i in range(100_000)]
    text = " ".join(parts)
    check(len(text) == 100_000 * 6 + 99_999, "join length")
    words = text.split()
    check(words == parts, "split round trip")
    check(text.count("w0") == 10_000, "count")
    up = text.upper().replace("W", "x")
    check(up.count("x") == 100_000, "upper/replace")
    buf = bytearray()
    for i in range(50_000):
        buf += bytes([i % 251]) * (i % 13)  # realloc-driven growth
    check(len(buf) == sum(i % 13 for i in range(50_000)), "bytearray growth")
    check(sum(buf) == sum((i % 251) * (i % 13) for i in range(50_000)), "bytearray content")
    b = bytes(buf)
    check(b[::-1][::-1] == b, "bytes reversal")
    encoded = "\u00e9\u4e2d\U0001f600".join(parts[:10_000]).encode("utf-8")
    check(encoded.decode("utf-8").count("\u4e2d") == 9_999, "utf-8 round trip")


def json_round_trip():
    rng = random.Random(1234)
    doc = {
        "users": [
            {"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 10)] * (i % 5),
             "score": i * 0.5, "active": i % 3 == 0, "meta": {"k": [i, None, True]}}
            for i in range(20_000)
        ],
        "blob": "".join(chr(0x41 + rng.randrange(26)) for _ in range(100_000)),
    }
    s = json.dumps(doc, sort_keys=True)
    back = json.loads(s)
    check(back == doc, "json round trip")
    check(sum(u["id"] for u in back["users"]) == sum(range(20_000)), "json ids")
    check(sum(1 for u in back["users"] if u["active"]) == len(range(0, 20_000, 3)), "json booleans")
    pretty = json.dumps(back, indent=2)
    check(json.loads(pretty) == doc, "json indented round trip")


def threads():
    results = queue.Queue()
    work = queue.Queue()
    n_items = 40_000

    def producer(offset):
        for i in range(offset, n_items, 4):
            work.put(("item-%d" % i, list(range(i % 20))))

    def consumer():
        total = 0
        seen = {}
        while True:
            item = work.get()
            if item is None:
                break
            key, payload = item
            seen[key] = len(payload)
            total += sum(payload)
        results.put((total, seen))

    consumers = [threading.Thread(target=consumer) for _ in range(4)]
    producers = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join()
    for _ in consumers:
        work.put(None)
    for t in consumers:
        t.join()
    total = 0
    seen = {}
    while not results.empty():
        t, s = results.get()
        total += t
        seen.update(s)
    check(len(seen) == n_items, "threads: items lost or duplicated")
    check(total == sum(sum(range(i % 20)) for i in range(n_items)), "threads: totals")

    # Many short threads, each allocating and returning objects freed elsewhere.
    out = []
    lock = threading.Lock()

    def short(i):
        data = {"t%d-%d" % (i, j): "x" * j for j in range(200)}
        with lock:
            out.append(data)

    for batch in range(25):
        ts = [threading.Thread(target=short, args=(batch * 8 + k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    check(len(out) == 200 and all(len(d) == 200 for d in out), "short threads")
    check(sum(len(v) for d in out for v in d.values()) == 200 * sum(range(200)), "short threads: values")


def cycles_and_gc():
    class Node:
        __slots__ = ("next", "payload")

    for _ in range(5):
        nodes = [Node() for _ in range(20_000)]
        for i, node in enumerate(nodes):
            node.next = nodes[(i + 1) % len(nodes)]
            node.payload = [i] * 3
        del nodes, node
        gc.collect()
    check(gc.collect() == 0, "garbage left after collection")


def main():
    start = time.time()
    if os.environ.get("WORKLOAD_NO_OVERRIDE_CHECK") != "1":
        check_override()
    dicts_and_lists()
    strings_and_bytes()
    json_round_trip()
    threads()
    cycles_and_gc()
    print("python workload: OK (%s, PYTHONMALLOC=%s, %.2f s)"
          % (sys.version.split()[0], os.environ.get("PYTHONMALLOC", "default"), time.time() - start))


if __name__ == "__main__":
    main()
