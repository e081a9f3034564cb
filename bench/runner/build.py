"""Build: the project in Release mode, with fallbacks (library and
benchmarks only, no tests, bench/ alone)."""

import os
import subprocess
import sys
import time

from .common import HERE, ROOT, say, warn


def run_logged(cmd, log):
    log.write("$ %s\n" % " ".join(cmd))
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode == 0


def build(args, log_path):
    """Builds the project; returns the directory holding the bench-* programs."""
    bdir = args.build_dir
    t0 = time.time()
    say("building: cmake Release in %s (-j%d, log: %s)" % (bdir, args.jobs, os.path.relpath(log_path, ROOT)))
    with open(log_path, "w") as log:
        ok = run_logged(["cmake", "-S", ROOT, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release"], log)
        if ok and run_logged(["cmake", "--build", bdir, "-j", str(args.jobs)], log):
            say("build ok (%.0f s)" % (time.time() - t0))
            return bdir
        if ok:
            warn("the project build failed (see %s); building the library and the benchmarks only" %
                 os.path.relpath(log_path, ROOT))
            if run_logged(["cmake", "--build", bdir, "-j", str(args.jobs), "--target", "bench-all", "shardalloc"], log):
                return bdir
        # The tests may be what breaks (they are not needed here): try without them.
        notests = os.path.join(bdir, "bench-notests")
        warn("trying a build without the tests in %s" % notests)
        if run_logged(["cmake", "-S", ROOT, "-B", notests, "-DCMAKE_BUILD_TYPE=Release",
                       "-DSHARDALLOC_BUILD_TESTS=OFF"], log) and \
                run_logged(["cmake", "--build", notests, "-j", str(args.jobs)], log):
            return notests
        warn("the project does not build (see %s); building bench/ standalone" % os.path.relpath(log_path, ROOT))
        alone = os.path.join(bdir, "bench-only")
        if run_logged(["cmake", "-S", HERE, "-B", alone, "-DCMAKE_BUILD_TYPE=Release"], log) and \
                run_logged(["cmake", "--build", alone, "-j", str(args.jobs)], log):
            return alone
    say("FATAL: the benchmarks do not build; see %s" % log_path)
    sys.exit(2)


def find_bench_dir(args):
    for d in (args.build_dir, os.path.join(args.build_dir, "bench-notests"), os.path.join(args.build_dir, "bench-only")):
        if os.path.exists(os.path.join(d, "bench-launch")):
            return d
    say("FATAL: no bench-launch in %s (run without --no-build)" % args.build_dir)
    sys.exit(2)
