"""The runner proper: jobs, repetitions with the allocator order rotated,
failures, and the medians of time and peak RSS per cell."""

import os
import subprocess
import time

from .common import HERE, find_lib, median, say
from .launch import run_once
from .programs import python_exe, run_debian, run_redis, run_startup
from .workloads import REDIS_TESTS, REGION_ALLOCATORS


def region_variants(bench_dir):
    """The variants bench-region was built with (empty if it is missing)."""
    exe = os.path.join(bench_dir, "bench-region")
    if not os.access(exe, os.X_OK):
        return None
    try:
        r = subprocess.run([exe, "--variants"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return r.stdout.split() if r.returncode == 0 else []


class Job:
    """One (workload, threads) cell group, run under each of its allocators."""

    def __init__(self, name, kind, threads, allocators, rows=None):
        self.name, self.kind, self.threads, self.allocators = name, kind, threads, allocators
        self.rows = rows or [name]  # result rows it produces (redis: one per test)


def mimalloc_base(allocator):
    """The allocator whose time is the 'mimalloc' ratio baseline for a row."""
    return "mimalloc-region" if allocator in REGION_ALLOCATORS else "mimalloc"


def aggregate(runs, row_keys):
    """One cell per (workload, threads, allocator) in row_keys order."""
    cells = []
    index = {}
    by_key = {}
    for r in runs:
        by_key.setdefault((r["workload"], r["threads"], r["allocator"]), []).append(r)
    for key in row_keys:
        rs = by_key.get(key)
        if not rs:
            continue
        w, t, a = key
        ok = [r for r in rs if r["status"] == "ok"]
        failed = [r for r in rs if r["status"] != "ok"]
        cell = {"workload": w, "threads": t, "allocator": a, "reps": len(rs), "reps_ok": len(ok)}
        if failed:
            cell.update(status="FAIL", note=failed[0]["reason"])
        else:
            times = [r["wall_s"] for r in ok]
            rss = [r["maxrss_kib"] for r in ok]
            cell.update(status="ok", note="", median_time_s=median(times), min_time_s=min(times),
                        max_time_s=max(times), median_rss_kib=median(rss))
            ops = [r["ops_s"] for r in ok if r.get("ops_s")]
            if ops:
                cell["median_ops_s"] = median(ops)
        cells.append(cell)
        index[key] = cell

    def ratio(cell, base, key):
        b = index.get((cell["workload"], cell["threads"], base))
        if cell["status"] != "ok" or b is None or b["status"] != "ok" or not b[key]:
            return None
        return cell[key] / b[key]

    for c in cells:
        c["time_vs_glibc"] = ratio(c, "glibc", "median_time_s")
        c["time_vs_mimalloc"] = ratio(c, mimalloc_base(c["allocator"]), "median_time_s")
        c["rss_vs_glibc"] = ratio(c, "glibc", "median_rss_kib")
        c["rss_vs_mimalloc"] = ratio(c, mimalloc_base(c["allocator"]), "median_rss_kib")
        if c["allocator"] in REGION_ALLOCATORS:
            c["time_vs_mutex"] = ratio(c, "shardalloc-region-mutex", "median_time_s")
    return cells


class Setup:
    """What every run needs: the launcher, the build, the libraries to
    preload, the scales, the timeout and a scratch directory."""

    def __init__(self, launcher, bench_dir, libs, scales, region_sub, timeout, tmpdir):
        self.launcher, self.bench_dir, self.libs, self.scales = launcher, bench_dir, libs, scales
        self.region_sub, self.timeout, self.tmpdir = region_sub, timeout, tmpdir
        self.debian = {}  # Debian program row -> programs.Prepared (input and reference output)


def run_cell(setup, job, a, log):
    """One run of job under allocator a: {result row: run dict}."""
    w, t, s = job.name, job.threads, setup
    if job.kind == "micro":
        return {w: run_once(s.launcher, [os.path.join(s.bench_dir, "bench-" + w), str(t), "%g" % s.scales[w]],
                            s.libs[a], s.timeout, s.tmpdir)}
    if job.kind == "region":
        return {w: run_once(s.launcher, [os.path.join(s.bench_dir, "bench-region"), REGION_ALLOCATORS[a],
                                         s.region_sub[w], str(t), "%g" % s.scales[w]], None, s.timeout, s.tmpdir)}
    if job.kind == "startup":
        return {w: run_startup(s.launcher, s.libs[a], s.timeout, s.tmpdir)}
    if job.kind == "debian":
        return {w: run_debian(s.debian[w], s.launcher, s.libs[a], s.timeout, s.tmpdir)}
    if job.kind == "python":
        extra = {"PYTHONMALLOC": "malloc"} if w == "python-malloc" else {"PYTHONMALLOC": "pymalloc"}
        script = os.path.join(HERE, "py_workload.py")
        return {w: run_once(s.launcher, [python_exe(), script, str(t), "%g" % s.scales[w]], s.libs[a], s.timeout,
                            s.tmpdir, extra)}
    # redis; "glibc" preloads libc itself: Debian's redis-server links jemalloc
    pre = s.libs[a] if a != "glibc" else find_lib("libc.so.6")
    rr = run_redis(pre, s.timeout, s.tmpdir, log)
    return {"redis-" + x: rr[x] for x in REDIS_TESTS}


def run_jobs(setup, jobs, reps, log):
    """Runs every job under each of its allocators, rep after rep, the
    allocator order rotated every rep so that none always runs first; a cell
    that failed is skipped in the later reps. Returns the list of runs."""
    total = reps * sum(len(j.allocators) for j in jobs)
    runs = []
    dead = set()  # (job, threads, allocator) that already failed: their later reps are skipped
    done = 0
    t_runs = time.time()
    for rep in range(reps if jobs else 0):
        for job in jobs:
            w, t = job.name, job.threads
            k = rep % len(job.allocators)
            for a in job.allocators[k:] + job.allocators[:k]:
                done += 1
                prefix = "[%*d/%d %5.0fs] %-19s T=%-2d rep %d/%d %-23s" % (
                    len(str(total)), done, total, time.time() - t_runs, w, t, rep + 1, reps, a)
                if (w, t, a) in dead:
                    say(prefix + " skipped (failed before)")
                    continue
                results = run_cell(setup, job, a, log)
                line_ok = []
                failed = None
                for row, r in results.items():
                    r.update(workload=row, threads=t, allocator=a, rep=rep + 1, scale=setup.scales.get(w, 1.0))
                    runs.append(r)
                    log.write("%s T=%d %s rep %d: %s %.3fs %d KiB\n  stdout: %s\n  stderr: %s\n" % (
                        row, t, a, rep + 1, r["status"], r.get("wall_s", 0.0), r.get("maxrss_kib", 0),
                        r.get("stdout", ""), r.get("stderr", "")))
                    if r["status"] == "ok":
                        line_ok.append(r)
                    else:
                        failed = r
                log.flush()
                if failed is not None:
                    dead.add((w, t, a))
                    say("%s FAIL: %s" % (prefix, failed["reason"]))
                elif job.kind == "redis":
                    say("%s %s  %9.1f MiB" % (prefix, " ".join(
                        "%s=%.0f/s" % (row[len("redis-"):], r["ops_s"]) for row, r in results.items()),
                        line_ok[0]["maxrss_kib"] / 1024.0))
                else:
                    r = line_ok[0]
                    say("%s %8.3f s %9.1f MiB" % (prefix, r["wall_s"], r["maxrss_kib"] / 1024.0))
    return runs


def cells_of(jobs, runs):
    """The aggregated cells: micro rows first, then the programs, then the region rows."""
    row_keys = []
    for job in jobs:
        for row in job.rows:
            for a in job.allocators:
                row_keys.append((row, job.threads, a))
    order = {"micro": 0, "python": 1, "redis": 1, "startup": 1, "debian": 1, "region": 2}
    kind_of = {row: job.kind for job in jobs for row in job.rows}
    row_keys.sort(key=lambda k: order[kind_of[k[0]]])
    return aggregate(runs, row_keys)
