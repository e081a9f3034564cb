"""The Google Benchmark micro-benchmarks (bench-micro)."""

import json
import os
import subprocess

from .common import fmt, say, tail


def run_micro(bench_dir, log, min_time=0.2):
    """Runs bench-micro (Google Benchmark); returns a list of rows or None."""
    exe = os.path.join(bench_dir, "bench-micro")
    if not os.access(exe, os.X_OK):
        say("SKIP micro: %s not built (needs Google Benchmark: Debian libbenchmark-dev)" % exe)
        return None
    cmd = [exe, "--benchmark_format=json", "--benchmark_min_time=%g" % min_time]
    say("micro: %s" % " ".join(cmd))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        say("micro FAIL: timeout")
        return None
    log.write("$ %s\n%s\n" % (" ".join(cmd), r.stderr[-3000:]))
    try:
        data = json.loads(r.stdout)
    except ValueError:
        say("micro FAIL: exit %d, no JSON: %s" % (r.returncode, tail(r.stderr)))
        return None
    rows = []
    for b in data.get("benchmarks", []):
        ips = b.get("items_per_second")
        rows.append({"name": b.get("name"), "iterations": b.get("iterations"),
                     "real_time": b.get("real_time"), "cpu_time": b.get("cpu_time"), "time_unit": b.get("time_unit"),
                     "items_per_second": ips, "ns_per_item": (1e9 / ips) if ips else None,
                     "error": b.get("error_message")})
    return rows


def micro_table(rows):
    lines = ["| benchmark | ns per item | items/s (M) |", "|---|--:|--:|"]
    for r in rows:
        if r.get("error"):
            lines.append("| %s | FAIL (%s) | |" % (r["name"], r["error"]))
            continue
        lines.append("| %s | %s | %s |" % (r["name"], fmt(r["ns_per_item"], ".1f"),
                                           fmt(r["items_per_second"] / 1e6 if r["items_per_second"] else None, ".1f")))
    return "\n".join(lines)
