"""A Python workload for the heap map test (tests/heapmap/heapmap_test.sh).

Run with LD_PRELOAD=libshardalloc.so and PYTHONMALLOC=malloc (every object
through malloc). It builds objects of many sizes, lets four threads build
objects that the main thread keeps after the threads exit (their heaps are
abandoned with live blocks), holds a few huge buffers, then writes a heap
snapshot through the C API (ctypes: shard_heap_snapshot_write) to argv[1].
SHARDALLOC_SNAPSHOT, when set, adds a second snapshot at exit.
"""
import ctypes
import json
import os
import sys
import threading
import time


def wait_for_abandoned_heaps(lib, count, timeout_s):
    """Polls shard_stats_json until heaps_abandoned >= count."""
    lib.shard_stats_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.shard_stats_json.restype = ctypes.c_size_t
    buf = ctypes.create_string_buffer(1 << 16)
    deadline = time.monotonic() + timeout_s
    while True:
        n = lib.shard_stats_json(buf, len(buf))
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            continue
        stats = json.loads(buf.raw[:n].decode())
        if stats["heaps_abandoned"] >= count:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def main():
    out_path = sys.argv[1]
    lib = ctypes.CDLL(None)
    if not hasattr(lib, "shard_heap_snapshot_write"):
        print("workload: shard_heap_snapshot_write not found: is libshardalloc.so preloaded?", file=sys.stderr)
        return 2
    lib.shard_heap_snapshot_write.argtypes = [ctypes.c_int]
    lib.shard_heap_snapshot_write.restype = ctypes.c_int

    # The main thread: a dict of strings, lists, and medium / huge buffers.
    table = {"key-%06d" % i: "v" * (i % 200) for i in range(60_000)}
    lists = [list(range(i % 300)) for i in range(5_000)]
    medium = [bytearray(20_000 + 1000 * i) for i in range(12)]
    huge = [bytes(3 << 20), bytearray(9 << 20)]
    # Churn: build and drop, so some pages end up half empty.
    for round_ in range(5):
        junk = [("x%d" % i) * (1 + i % 40) for i in range(40_000)]
        del junk[::2]
        table.update({"r%d-%d" % (round_, i): junk[i] for i in range(0, len(junk), 97)})
        del junk

    # Threads whose objects outlive them: their heaps are abandoned with live blocks.
    kept = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(n):
        start.wait()  # all four run at once, so each has its own heap
        mine = [os.urandom(16 + (i * 7 + n) % 2000) for i in range(3_000 + 1_000 * n)]
        with lock:
            kept.append(mine[::3])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # join() returns when the Python thread is done; the OS thread gives its
    # heap up a moment later (in its TLS destructor). Wait for that.
    if not wait_for_abandoned_heaps(lib, 4, timeout_s=10.0):
        print("workload: the worker threads' heaps were not abandoned within 10 s", file=sys.stderr)
        return 1

    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    rc = lib.shard_heap_snapshot_write(fd)
    os.close(fd)
    if rc != 0:
        print("workload: shard_heap_snapshot_write failed", file=sys.stderr)
        return 1
    total = len(table) + len(lists) + len(medium) + len(huge) + sum(len(k) for k in kept)
    print("workload: OK (%d objects kept, snapshot in %s)" % (total, out_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
