#!/usr/bin/env python3
"""Runs every program of tests/security against shardalloc (Release and
checked) and the allocators found on this machine; prints a Markdown table
(C = caught, . = not caught, E = error) with totals.

    tests/security/make-table.py <build dir> [> table.md]
"""
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/riscv64-linux-gnu"]
PEERS = [
    ("glibc", None),
    ("mimalloc", "libmimalloc.so.2"),
    ("jemalloc", "libjemalloc.so.2"),
    ("tcmalloc", "libtcmalloc_minimal.so.4"),
    ("scudo", "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.scudo_standalone-x86_64.so"),
]


def find_lib(name):
    if name is None or os.path.isabs(name):
        return name if name is None or os.path.exists(name) else False
    for d in LIBDIRS:
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return False


def run(lib, prog):
    out = subprocess.run(["sh", os.path.join(HERE, "run-one.sh"), lib or "-", prog],
                         capture_output=True, text=True).stdout
    return {"caught": "C", "not_caught": "."}.get(out.split(" ")[0], "E")


def main():
    build = sys.argv[1]
    allocators = [("shardalloc", os.path.join(build, "libshardalloc.so")),
                  ("shardalloc checked", os.path.join(build, "libshardalloc-checked.so"))]
    for name, lib in PEERS:
        path = find_lib(lib)
        if path is not False:
            allocators.append((name, path))
    progs = sorted(set(glob.glob(os.path.join(build, "security_*")) + glob.glob(os.path.join(build, "tests", "security", "security_*"))))
    progs = [p for p in progs if os.access(p, os.X_OK) and not p.endswith(".cmake")]
    totals = [0] * len(allocators)
    print("| program | " + " | ".join(a for a, _ in allocators) + " |")
    print("|---|" + "---|" * len(allocators))
    for prog in progs:
        row = [run(lib, prog) for _, lib in allocators]
        for i, r in enumerate(row):
            totals[i] += r == "C"
        print("| " + os.path.basename(prog)[len("security_"):] + " | " + " | ".join(row) + " |", flush=True)
    print("| **caught, of %d** | " % len(progs) + " | ".join("**%d**" % t for t in totals) + " |")


if __name__ == "__main__":
    main()
