#!/usr/bin/env python3
"""Writes the seed corpus of the shardalloc fuzzer (fuzz/corpus/): a few small
hand-written programs in the encoding of fuzz/shardalloc_fuzz.cpp (see the
comment at its top). Run from anywhere: python3 fuzz/make-corpus.py"""
import os

C_MALLOC, C_CALLOC, C_ALIGNED, C_REALLOC, C_FREE, C_XFREE, R_ALLOC, R_DEALLOC, R_XDEALLOC, SYNC, CHECK_ALL, \
    R_ADD_MEMORY, R_BAD, RESTART, C_BURST, R_BURST = range(16)


def size2(n):
    """Two bytes that decode_size() turns into n (n must be representable)."""
    if n <= 64:
        return [0x00, n]
    if n <= 8191:
        return [0x20 | (n >> 8), n & 0xFF]
    if n % 16 == 0 and n // 16 <= 8191:
        v = n // 16
        return [0x60 | (v >> 8), v & 0xFF]
    if n % 1024 == 0 and n // 1024 <= 8191:
        v = n // 1024
        return [0xC0 | (v >> 8), v & 0xFF]
    raise ValueError(n)


def edge(i):
    return [0x80, i]


def align_log(a):
    return a.bit_length() - 1


def prog(*ops):
    out = []
    for op in ops:
        out += op
    return bytes(out)


seeds = {
    "small-mix": prog(
        [C_MALLOC] + size2(0), [C_MALLOC] + size2(8), [C_MALLOC] + size2(24), [C_MALLOC] + size2(100),
        [C_MALLOC] + size2(1000), [C_CALLOC, 3] + size2(40), [C_REALLOC, 1] + size2(3000), [C_FREE, 0],
        [C_MALLOC] + size2(5000), [CHECK_ALL], [C_FREE, 2], [C_REALLOC, 0] + size2(16), [C_REALLOC, 7] + size2(64)),
    "full-pages-remote-frees": prog(
        [C_BURST] + size2(48) + [63], [C_BURST] + size2(48) + [63], [C_XFREE, 0, 7], [C_XFREE, 5, 7],
        [C_XFREE, 9, 7], [C_BURST] + size2(48) + [63], [SYNC], [C_BURST] + size2(48) + [63], [C_XFREE, 3, 7],
        [C_FREE, 1], [C_BURST] + size2(48) + [20], [CHECK_ALL]),
    "region-full-pages-remote": prog(
        [R_BURST] + size2(32) + [63], [R_BURST] + size2(32) + [63], [R_XDEALLOC, 0, 7], [R_XDEALLOC, 11, 7],
        [R_BURST] + size2(32) + [63], [SYNC], [R_DEALLOC, 4], [R_BURST] + size2(32) + [30], [R_XDEALLOC, 2, 7],
        [CHECK_ALL]),
    "region-exhaust-add-memory": prog(
        [R_BURST] + size2(100000 // 16 * 16) + [63], [R_ALLOC] + size2(2 << 20) + [3], [R_ADD_MEMORY, 0],
        [R_BURST] + size2(100000 // 16 * 16) + [20], [R_DEALLOC, 3], [R_XDEALLOC, 1, 3], [SYNC],
        [R_ADD_MEMORY, 3], [R_ALLOC] + size2(1 << 20) + [3]),
    "aligned": prog(
        [C_ALIGNED] + size2(100) + [align_log(64)], [C_ALIGNED] + size2(100) + [align_log(4096)],
        [C_ALIGNED] + size2(0) + [align_log(256 << 10)], [C_ALIGNED] + size2(5000) + [align_log(1 << 20)],
        [R_ALLOC] + size2(100) + [align_log(256)], [R_ALLOC] + size2(3000) + [align_log(65536)],
        [R_ALLOC] + size2(1) + [23], [C_FREE, 1], [R_DEALLOC, 0], [C_XFREE, 0, 1], [R_XDEALLOC, 0, 0]),
    "huge-realloc": prog(
        [C_MALLOC] + size2(1 << 20), [C_MALLOC] + size2(3 << 20), [C_REALLOC, 0] + size2(7 << 20),
        [C_REALLOC, 1] + size2(200), [C_REALLOC, 0] + size2(600 << 10), [R_ALLOC] + size2(1 << 20) + [3],
        [C_XFREE, 0, 0], [R_XDEALLOC, 0, 0], [SYNC]),
    "edge-sizes": prog(*[[C_MALLOC] + edge(i) for i in range(32)], *[[R_ALLOC] + edge(i) + [3] for i in range(24)],
                       [CHECK_ALL]),
    "thread-churn": prog(
        [C_BURST] + size2(80) + [40], [R_BURST] + size2(80) + [40], [C_XFREE, 0, 7], [R_XDEALLOC, 0, 7],
        [RESTART], [C_XFREE, 3, 7], [R_XDEALLOC, 3, 7], [RESTART], [C_BURST] + size2(80) + [40],
        [R_BURST] + size2(80) + [40], [RESTART]),
    "region-bad-deallocs": prog(
        [R_ALLOC] + size2(64) + [3], [C_MALLOC] + size2(64), [R_BAD, 0], [R_BAD, 1], [R_BAD, 2], [R_BAD, 3],
        [R_ALLOC] + size2(64) + [3], [R_BAD, 4], [R_ALLOC] + size2(600 << 10 & ~15) + [3], [R_BAD, 4]),
}

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out_dir, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")
