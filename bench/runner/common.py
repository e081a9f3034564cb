"""Small helpers shared by the runner's modules: paths, printing, formatting,
statistics and finding shared libraries."""

import math
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/
ROOT = os.path.dirname(HERE)


def say(msg=""):
    print(msg, flush=True)


def warn(msg):
    print("warning: " + msg, flush=True)


def tail(text, n=3):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:])


def median(xs):
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def lib_dirs():
    dirs = []
    try:
        arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, timeout=10).stdout.strip()
        if arch:
            dirs.append("/usr/lib/" + arch)
    except (OSError, subprocess.SubprocessError):
        pass
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib"]
    seen, out = set(), []
    for d in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def find_lib(soname):
    for d in lib_dirs():
        path = os.path.join(d, soname)
        if os.path.exists(path):
            return path
    return None
