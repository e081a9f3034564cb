"""The command: options, what to run, and the steps in order (dependencies,
build, allocators, runs, report)."""

import argparse
import datetime
import os
import shutil
import tempfile

from . import report
from .build import build, find_bench_dir
from .common import ROOT, HERE, say
from .deps import ensure_dependencies
from .execute import Job, Setup, cells_of, region_variants, run_jobs
from .icount import run_icount
from .launch import smoke_test
from .micro import run_micro
from .programs import prepare_debian
from .workloads import (DEBIAN_NAMES, DEBIAN_PROGRAMS, ALL_ALLOCATORS, ALL_WORKLOADS, ALLOCATOR_ORDER, OPT_IN_ALLOCATORS, PEERS,
                        PROGRAM_NAMES, PROGRAM_WORKLOADS, REDIS_PACKAGES, REDIS_TESTS, REGION_ALLOCATORS, REGION_NAMES,
                        REGION_ORDER, REGION_THREADS, REGION_WORKLOADS, WORKLOAD_NAMES, WORKLOADS)

def csv_list(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Build shardalloc and compare it with glibc, mimalloc, jemalloc and tcmalloc.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="workloads: " + ", ".join(ALL_WORKLOADS) + "\nallocators: " + ", ".join(ALL_ALLOCATORS),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small sizes, 1 and N threads, 3 reps, about 5 minutes on 2 cores (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="full sizes (~1-5 s per run), 1, N and 4N threads, 5 reps, plus redis, "
                           "instruction counts and micro-benchmarks")
    p.set_defaults(mode=None)
    p.add_argument("--icount", action="store_true",
                   help="instruction counts per malloc/free under callgrind (alone: only this; "
                        "part of --full)")
    p.add_argument("--micro", action="store_true",
                   help="Google Benchmark micro-benchmarks, bench-micro (alone: only this; part of --full)")
    p.add_argument("--no-icount", action="store_true", help="--full without the instruction counts")
    p.add_argument("--no-micro", action="store_true", help="--full without the micro-benchmarks")
    p.add_argument("--allocators", type=csv_list, default=None, metavar="A,B",
                   help="allocators to run (default: all but shardalloc-checked, which is opt-in); "
                        "glibc and mimalloc are the ratio baselines")
    p.add_argument("--workloads", type=csv_list, default=None, metavar="X,Y",
                   help="workloads to run (default: all)")
    p.add_argument("--threads", type=csv_list, default=None, metavar="T1,T2",
                   help="thread counts (default: 1,N quick; 1,N,4N full; N = nproc)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per cell (default: 3 quick, 5 full)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every workload's size by this factor (default 1.0)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before a run is killed and reported FAIL (default: 20 quick, 300 full)")
    p.add_argument("--no-build", action="store_true", help="do not run cmake; use what is in the build dir")
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build"), help="cmake build directory (default: build/)")
    p.add_argument("--jobs", type=int, default=2, help="parallel build jobs (default 2)")
    p.add_argument("--shardalloc", default=None, metavar="PATH",
                   help="libshardalloc.so to preload (default: BUILD_DIR/libshardalloc.so)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory (default: bench/results)")
    p.add_argument("--no-install", action="store_true",
                   help="never call apt-get; skip peers or the chart when their packages are missing")
    p.add_argument("--no-chart", action="store_true", help="do not draw the gnuplot chart")
    p.add_argument("--list", action="store_true", help="list workloads and allocators and exit")
    a = p.parse_args(argv)

    if a.allocators is not None:
        bad = [x for x in a.allocators if x not in ALL_ALLOCATORS]
        if bad:
            p.error("unknown allocator(s): %s (known: %s)" % (", ".join(bad), ", ".join(ALL_ALLOCATORS)))
    if a.workloads is not None:
        bad = [x for x in a.workloads if x not in ALL_WORKLOADS]
        if bad:
            p.error("unknown workload(s): %s (known: %s)" % (", ".join(bad), ", ".join(ALL_WORKLOADS)))
    # --icount / --micro without a mode: only those sections.
    a.sections_only = a.mode is None and (a.icount or a.micro)
    if a.mode is None:
        a.mode = "quick"
    if a.mode == "full":
        a.icount = a.icount or not a.no_icount
        a.micro = a.micro or not a.no_micro
    if a.threads is not None:
        try:
            a.threads = [int(x) for x in a.threads]
        except ValueError:
            p.error("--threads takes integers")
        if any(t < 1 for t in a.threads):
            p.error("--threads must be >= 1")
    if a.reps is not None and a.reps < 1:
        p.error("--reps must be >= 1")
    if not a.scale > 0:
        p.error("--scale must be > 0")
    return a



def list_workloads():
    say("workloads (LD_PRELOAD; allocators %s):" % ", ".join(ALLOCATOR_ORDER))
    for name, qs, fs, desc in WORKLOADS:
        say("  %-20s %s (quick scale %g, full %g)" % (name, desc, qs, fs))
    say("region workloads (bench-region; allocators %s):" % ", ".join(REGION_ORDER))
    for name, sub, qs, fs, multi, desc in REGION_WORKLOADS:
        say("  %-20s %s (quick scale %g, full %g; threads %s)" % (
            name, desc, qs, fs, ",".join(map(str, REGION_THREADS)) if multi else "1"))
    say("programs (LD_PRELOAD):")
    for name, qs, fs, desc in PROGRAM_WORKLOADS:
        say("  %-20s %s (%s)" % (name, desc, "quick and full" if qs is not None else "full only"))
    say("allocators: " + ", ".join(ALL_ALLOCATORS))
    say("extra sections: --icount (callgrind instruction counts), --micro (Google Benchmark); both in --full")
    return 0


class Plan:
    """What this invocation runs, from the options and the mode."""

    def __init__(self, args, nproc):
        self.full = args.mode == "full"
        self.reps = args.reps or (5 if self.full else 3)
        self.timeout = args.timeout or (300.0 if self.full else 20.0)
        threads = args.threads or ([1, nproc, 4 * nproc] if self.full else [1, nproc])
        self.threads = list(dict.fromkeys(threads))  # dedupe, keep order
        if args.sections_only:
            self.micro, self.region, self.prog = [], [], []
        elif args.workloads is not None:
            self.micro = [w for w in WORKLOAD_NAMES if w in args.workloads]
            self.region = [w for w in REGION_NAMES if w in args.workloads]
            self.prog = [w for w in PROGRAM_NAMES if w in args.workloads]
        else:
            self.micro = list(WORKLOAD_NAMES)
            self.region = list(REGION_NAMES)
            self.prog = [name for name, qs, fs, _ in PROGRAM_WORKLOADS if self.full or qs is not None]
        self.allocators = [a for a in ALLOCATOR_ORDER
                           if (args.allocators is None and a not in OPT_IN_ALLOCATORS)
                           or (args.allocators and a in args.allocators)]
        self.region_allocators = [a for a in REGION_ORDER if args.allocators is None or a in args.allocators]
        if self.region and not self.region_allocators:
            say("SKIP region workloads: no region allocator selected (%s)" % ", ".join(REGION_ORDER))
            self.region = []
        self.need_preload = bool(self.micro or self.prog or args.icount)
        self.scales = {name: (fs if self.full else qs) * args.scale for name, qs, fs, _ in WORKLOADS}
        self.scales.update({name: (fs if self.full else qs) * args.scale
                            for name, _, qs, fs, _, _ in REGION_WORKLOADS})
        self.scales.update({name: (fs if self.full else (qs or fs)) * args.scale
                            for name, qs, fs, _ in PROGRAM_WORKLOADS})


def preload_libs(args, plan, peers, bench_dir, launcher, tmpdir):
    """{allocator: library to preload (None for glibc)} of those that preload."""
    libs = {}
    if not plan.need_preload:
        return libs
    for a in plan.allocators:
        if a == "glibc":
            libs[a] = None
        elif a == "shardalloc":
            path = args.shardalloc or os.path.join(bench_dir, "libshardalloc.so")
            if not args.shardalloc and not os.path.exists(path):
                path = os.path.join(args.build_dir, "libshardalloc.so")  # bench-only: possibly stale
            if not os.path.exists(path):
                say("SKIP shardalloc: %s not found (not built yet?)" % path)
                continue
            if smoke_test(launcher, a, path, tmpdir):
                libs[a] = os.path.abspath(path)
        elif a == "shardalloc-checked":
            path = os.path.join(bench_dir, "libshardalloc-checked.so")
            if not os.path.exists(path):
                say("SKIP shardalloc-checked: %s not found (a checked build has no separate library)" % path)
                continue
            if smoke_test(launcher, a, path, tmpdir):
                libs[a] = os.path.abspath(path)
        elif a in peers:
            if smoke_test(launcher, a, peers[a], tmpdir):
                libs[a] = peers[a]
    return libs


def region_allocators(plan, bench_dir):
    """The region allocators bench-region was built with (clears plan.region without it)."""
    found = []
    if not plan.region:
        return found
    variants = region_variants(bench_dir)
    if variants is None:
        say("SKIP region workloads: %s not built (needs the shardalloc_static target)" %
            os.path.join(bench_dir, "bench-region"))
        plan.region = []
        return found
    for a in plan.region_allocators:
        if REGION_ALLOCATORS[a] in variants:
            found.append(a)
        else:
            say("SKIP %s: bench-region was built without it (mimalloc.h / libmimalloc with the "
                "arena API not found)" % a)
    for a in found:
        say("  %-23s %s %s" % (a, os.path.join(bench_dir, "bench-region"), REGION_ALLOCATORS[a]))
    return found


def skip_missing(plan, bench_dir):
    """Drops the programs and benchmarks that are not installed or not built."""
    if "redis" in plan.prog:
        if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
            say("SKIP redis: redis-server / redis-benchmark not installed (Debian packages %s)" %
                " ".join(REDIS_PACKAGES))
            plan.prog = [w for w in plan.prog if w != "redis"]
    exes = {name: exe for name, _, _, _, exe, _ in DEBIAN_PROGRAMS}
    pkgs = {name: pkgs for name, _, _, pkgs, _, _ in DEBIAN_PROGRAMS}
    for w in [w for w in plan.prog if w in exes and shutil.which(exes[w]) is None]:
        say("SKIP %s: %s not installed (Debian package %s)" % (w, exes[w], " ".join(pkgs[w])))
        plan.prog.remove(w)
    missing = [w for w in plan.micro if not os.access(os.path.join(bench_dir, "bench-" + w), os.X_OK)]
    for w in missing:
        say("SKIP workload %s: %s not built" % (w, os.path.join(bench_dir, "bench-" + w)))
    plan.micro = [w for w in plan.micro if w not in missing]


def make_jobs(args, plan, allocators, region_allocs):
    jobs = []
    if allocators:
        for w in plan.micro:
            for t in plan.threads:
                jobs.append(Job(w, "micro", t, allocators))
        for w in plan.prog:
            rows = ["redis-" + x for x in REDIS_TESTS] if w == "redis" else None
            kind = w if w in ("redis", "startup") else "debian" if w in DEBIAN_NAMES else "python"
            jobs.append(Job(w, kind, 1, allocators, rows))
    elif plan.micro or plan.prog:
        say("SKIP preload workloads: no allocator could be preloaded")
    region_multi = {name: multi for name, _, _, _, multi, _ in REGION_WORKLOADS}
    for w in plan.region:
        if not region_allocs:
            break
        for t in ((args.threads or REGION_THREADS) if region_multi[w] else [1]):
            jobs.append(Job(w, "region", t, region_allocs))
    return jobs


def main(argv):
    args = parse_args(argv)
    nproc = os.cpu_count() or 1
    if args.list:
        return list_workloads()
    plan = Plan(args, nproc)

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    mode_tag = args.mode if not args.sections_only else "+".join(
        x for x, on in (("icount", args.icount), ("micro", args.micro)) if on)
    base = os.path.join(args.out, "%s-%s" % (stamp, mode_tag))
    started = report.Start(base)
    if args.sections_only:
        say("shardalloc bench: %s only" % mode_tag)
    else:
        say("shardalloc bench: %s mode, %d CPUs, threads %s, %d reps, timeout %gs%s" % (
            args.mode, nproc, ",".join(map(str, plan.threads)), plan.reps, plan.timeout,
            "".join(", +" + x for x, on in (("icount", args.icount), ("micro", args.micro)) if on)))

    peers, gnuplot = ensure_dependencies(args, [a for a in plan.allocators if a in PEERS] if plan.need_preload
                                         else [], base + "-apt.log", want_redis="redis" in plan.prog,
                                         want_valgrind=args.icount,
                                         want_programs=[(exe, pkgs) for name, _, _, pkgs, exe, _ in DEBIAN_PROGRAMS
                                                        if name in plan.prog])
    bench_dir = find_bench_dir(args) if args.no_build else build(args, base + "-build.log")
    launcher = os.path.join(bench_dir, "bench-launch")
    if not os.access(launcher, os.X_OK):
        say("FATAL: %s missing" % launcher)
        return 2

    tmpdir = tempfile.mkdtemp(prefix="shardalloc-bench-")
    libs = preload_libs(args, plan, peers, bench_dir, launcher, tmpdir)
    allocators = [a for a in ALLOCATOR_ORDER if a in libs]
    for a in allocators:
        say("  %-23s %s" % (a, libs[a] or "(system malloc, no preload)"))
    region_allocs = region_allocators(plan, bench_dir)
    skip_missing(plan, bench_dir)

    jobs = make_jobs(args, plan, allocators, region_allocs)
    if not jobs and not (args.icount or args.micro):
        say("FATAL: nothing to run")
        return 2
    if jobs:
        say("running %d cells x %d reps = %d runs" % (sum(len(j.allocators) for j in jobs), plan.reps,
                                                      plan.reps * sum(len(j.allocators) for j in jobs)))
    region_sub = {name: sub for name, sub, _, _, _, _ in REGION_WORKLOADS}
    setup = Setup(launcher, bench_dir, libs, plan.scales, region_sub, plan.timeout, tmpdir)
    for job in jobs:
        if job.kind == "debian":
            setup.debian[job.name] = prepare_debian(job.name, plan.scales[job.name], launcher, plan.timeout, tmpdir)
    with open(started.log_path, "w") as log:
        runs = run_jobs(setup, jobs, plan.reps, log)
        icount = run_icount(bench_dir, libs, tmpdir, log) if args.icount else None
        micro = run_micro(bench_dir, log) if args.micro else None
    shutil.rmtree(tmpdir, ignore_errors=True)

    cells = cells_of(jobs, runs)
    failures = report.publish(
        args, started, mode_tag, nproc, plan.threads, plan.reps, plan.timeout,
        {w: plan.scales[w] for w in plan.micro + plan.region + plan.prog}, cells, runs, allocators,
        region_allocs, libs, icount, micro, gnuplot, bench_dir)
    if not jobs and not (icount or micro):
        return 2
    return 1 if failures else 0
