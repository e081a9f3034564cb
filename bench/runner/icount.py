"""Instruction counts of the fast paths: bench-icount under callgrind."""

import os
import shutil
import subprocess
import time

from .common import fmt, say, tail
from .workloads import ALLOCATOR_ORDER, ICOUNT_COLUMNS, ICOUNT_N, ICOUNT_SIZE, VALGRIND_PACKAGE


def parse_callgrind(path):
    """{caller fn: {callee fn: [calls, inclusive Ir]}} from a callgrind file
    written with --compress-strings=no --compress-pos=no."""
    out = {}
    fn = None
    cfn = None
    pending = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if pending is not None:
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    ent = out.setdefault(fn, {}).setdefault(cfn or "?", [0, 0])
                    ent[0] += pending
                    ent[1] += int(parts[1])
                pending = None
                continue
            if line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("cfn="):
                cfn = line[4:].strip()
            elif line.startswith("calls="):
                try:
                    pending = int(line[6:].split()[0])
                except (ValueError, IndexError):
                    pending = None
    return out


def run_icount(bench_dir, libs, tmpdir, log):
    """Runs bench-icount under callgrind for every preload allocator; returns
    {allocator: {measure fn: instructions per op, ...}} (or {"error": why})."""
    exe = os.path.join(bench_dir, "bench-icount")
    valgrind = shutil.which("valgrind")
    results = {}
    if not os.access(exe, os.X_OK):
        say("SKIP icount: %s not built" % exe)
        return results
    if valgrind is None:
        say("SKIP icount: valgrind not available (Debian package %s)" % VALGRIND_PACKAGE)
        return results
    for a in ALLOCATOR_ORDER:
        if a not in libs:
            continue
        out = os.path.join(tmpdir, "callgrind.%s.out" % a)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        if libs[a]:
            env["LD_PRELOAD"] = libs[a]
        cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=" + out, "--compress-strings=no",
               "--compress-pos=no", exe, str(ICOUNT_N), str(ICOUNT_SIZE)]
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired:
            results[a] = {"error": "timeout"}
            say("icount %-10s FAIL: timeout" % a)
            continue
        log.write("$ %s%s\n%s\n" % ("LD_PRELOAD=%s " % libs[a] if libs[a] else "", " ".join(cmd), r.stderr[-3000:]))
        if r.returncode != 0 or not os.path.exists(out):
            results[a] = {"error": "exit %d: %s" % (r.returncode, tail(r.stderr))}
            say("icount %-10s FAIL: %s" % (a, results[a]["error"]))
            continue
        calls = parse_callgrind(out)
        row = {}
        for fn, _ in ICOUNT_COLUMNS:
            callees = calls.get(fn, {})
            ir = sum(v[1] for v in callees.values())
            row[fn] = ir / ICOUNT_N if callees else None
            row[fn + "_callees"] = {k: {"calls": v[0], "ir": v[1]} for k, v in callees.items()}
        results[a] = row
        say("icount %-10s %s (%.0f s)" % (a, "  ".join("%s=%s" % (fn.replace("measure_", ""), fmt(row[fn], ".1f"))
                                                      for fn, _ in ICOUNT_COLUMNS), time.time() - t0))
    return results


def icount_table(results):
    lines = ["Instructions per operation under `valgrind --tool=callgrind` (bench-icount, N = %d, %d-byte blocks; "
             "instructions executed inside malloc/free and their callees, including the PLT jump; loop overhead "
             "excluded; ratios to mimalloc in parentheses)" % (ICOUNT_N, ICOUNT_SIZE), "",
             "| allocator | " + " | ".join(t for _, t in ICOUNT_COLUMNS) + " |",
             "|---|" + "--:|" * len(ICOUNT_COLUMNS)]
    base = results.get("mimalloc", {})
    for a in ALLOCATOR_ORDER:
        row = results.get(a)
        if row is None:
            continue
        if "error" in row:
            lines.append("| %s | FAIL (%s) |%s" % (a, row["error"][:60], " |" * (len(ICOUNT_COLUMNS) - 1)))
            continue
        cells = []
        for fn, _ in ICOUNT_COLUMNS:
            v, b = row.get(fn), base.get(fn)
            if v is None:
                cells.append("-")
            elif b and a != "mimalloc":
                cells.append("%.1f (%.2f)" % (v, v / b))
            else:
                cells.append("%.1f" % v)
        lines.append("| %s | %s |" % (a, " | ".join(cells)))
    return "\n".join(lines)
