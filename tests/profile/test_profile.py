#!/usr/bin/env python3
"""The heap profiler on real runs (tests/profile/CMakeLists.txt).

  test_profile.py sites PROGRAM OUTDIR
      runs profile_sites (linked with libshardalloc.so) with a small sample
      rate: the mid-run profile attributes bytes to the right sites within the
      sampling error; the leak report at exit names site_leak, and only it.
  test_profile.py python LIBSHARDALLOC OUTDIR
      python3 preloaded with libshardalloc.so writes a profile mid-run (ctypes)
      and at exit: non-empty, well formed, and about as large as what it holds.
  test_profile.py redis LIBSHARDALLOC OUTDIR
      redis-server preloaded, filled with 50000 keys and shut down: its exit
      profile holds the keyspace (skipped, exit 77, without redis-server).
  test_profile.py growth PROGRAM OUTDIR
      profile_dumps growth with SHARDALLOC_PROFILE_GROWTH_MB=2: it grows to 11 MiB
      live, so 5 numbered dumps path.1 .. path.5, each parseable, each larger.
  test_profile.py signal PROGRAM OUTDIR
      profile_dumps signal with SHARDALLOC_PROFILE_SIGNAL=SIGUSR2: it raises the
      signal and allocates until path.signal.1 exists; the dump holds its 4 MiB.
Profiles are left in OUTDIR (the flame graph test renders them).
"""
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time

LINE = re.compile(r"^(\S(?:.*\S)?) (\d+)$")
MIB = 1 << 20


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def parse(path):
    """[(frames outermost first, bytes)] of a collapsed-stack profile; fails on a bad line."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            m = LINE.match(line.rstrip("\n"))
            if not m:
                fail("%s:%d: not a collapsed-stack line: %r" % (path, n, line))
            out.append((m.group(1).split(";"), int(m.group(2))))
    return out


def by_site(profile, sites):
    """Bytes per site: the innermost frame of each stack that is a known site."""
    totals = {s: 0 for s in sites}
    totals["other"] = 0
    for frames, nbytes in profile:
        site = next((f for f in reversed(frames) if f in sites), "other")
        totals[site] += nbytes
    return totals


def clean(outdir, pattern):
    os.makedirs(outdir, exist_ok=True)
    for f in glob.glob(os.path.join(outdir, pattern)):
        os.remove(f)


def exit_files(outdir, prefix):
    profs = [f for f in glob.glob(os.path.join(outdir, prefix + ".*")) if not f.endswith(".leaks")]
    if len(profs) != 1:
        fail("expected one exit profile %s.<pid>, found %s" % (prefix, profs))
    leaks = profs[0] + ".leaks"
    if not os.path.exists(leaks):
        fail("no leak report " + leaks)
    return profs[0], leaks


def run_sites(program, outdir):
    clean(outdir, "sites*")
    mid = os.path.join(outdir, "sites-mid.txt")
    env = dict(os.environ, SHARDALLOC_PROFILE=os.path.join(outdir, "sites-exit.%p"),
               SHARDALLOC_PROFILE_RATE="16384")
    r = subprocess.run([program, mid], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("profile_sites exited with %d: %s" % (r.returncode, r.stderr))
    sites = ["site_small", "site_medium", "site_huge", "site_leak", "site_temp"]
    got = by_site(parse(mid), sites)
    want = {"site_small": 8 * MIB, "site_medium": 16 * MIB, "site_huge": 16 * MIB,
            "site_leak": 2 * MIB, "site_temp": 0}
    print("mid-run profile (MiB): " + ", ".join("%s %.2f" % (k, v / MIB) for k, v in got.items()))
    # One sample per 16 KiB: 8 MiB is ~512 samples (1 sigma ~4.4%); 20% is > 4 sigma.
    for site in ("site_small", "site_medium"):
        if abs(got[site] - want[site]) > 0.2 * want[site]:
            fail("%s: %.2f MiB in the profile, %.2f MiB live" % (site, got[site] / MIB, want[site] / MIB))
    # 2 MiB is ~128 samples: 35%.
    if abs(got["site_leak"] - want["site_leak"]) > 0.35 * want["site_leak"]:
        fail("site_leak: %.2f MiB in the profile, 2 MiB live" % (got["site_leak"] / MIB))
    # Huge blocks of 4 MiB are always sampled, with weight ~1.
    if abs(got["site_huge"] - want["site_huge"]) > 0.01 * want["site_huge"]:
        fail("site_huge: %.2f MiB in the profile, 16 MiB live" % (got["site_huge"] / MIB))
    # 64 MiB went through site_temp, all freed: at most a block or two in flight.
    if got["site_temp"] > 64 * 1024:
        fail("site_temp: %d bytes in the profile, none live (sampled frees lost)" % got["site_temp"])
    if got["other"] > 1 * MIB:
        fail("%.2f MiB attributed to no site" % (got["other"] / MIB))
    prof, leaks = exit_files(outdir, "sites-exit")
    got = by_site(parse(prof), sites)
    print("exit profile (MiB): " + ", ".join("%s %.2f" % (k, v / MIB) for k, v in got.items()))
    if abs(got["site_leak"] - want["site_leak"]) > 0.35 * want["site_leak"]:
        fail("exit profile: site_leak %.2f MiB, 2 MiB leaked" % (got["site_leak"] / MIB))
    for site in ("site_small", "site_medium", "site_huge", "site_temp"):
        if got[site] > 64 * 1024:
            fail("exit profile: %s still has %d bytes (all were freed)" % (site, got[site]))
    text = open(leaks).read()
    if not text.startswith("shardalloc leak report: pid "):
        fail("leak report header: " + text[:80])
    first = text.split("\nleak: ", 2)
    if len(first) < 2 or "site_leak" not in first[1]:
        fail("the largest leak in the report is not site_leak:\n" + text[:2000])
    for site in ("site_small", "site_medium", "site_huge"):
        if site in text:
            fail("the leak report names %s, whose blocks were all freed" % site)
    print("PASS: sites attributed; leak report names site_leak (%s)" % leaks)


def run_growth(program, outdir):
    clean(outdir, "growth*")
    base = os.path.join(outdir, "growth.%p")
    env = dict(os.environ, SHARDALLOC_PROFILE=base, SHARDALLOC_PROFILE_RATE="4096",
               SHARDALLOC_PROFILE_GROWTH_MB="2")
    r = subprocess.run([program, "growth"], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("profile_dumps growth exited with %d: %s" % (r.returncode, r.stderr))
    exits = [f for f in glob.glob(os.path.join(outdir, "growth.*")) if re.search(r"growth\.\d+$", f)]
    if len(exits) != 1:
        fail("expected one exit profile growth.<pid>, found %s" % exits)
    prefix = exits[0]
    dumps = sorted(glob.glob(prefix + ".*"), key=lambda f: f.rsplit(".", 1)[1])
    numbered = {int(f.rsplit(".", 1)[1]): f for f in dumps if f.rsplit(".", 1)[1].isdigit()}
    # 11 MiB live at the end, a dump each 2 MiB of growth: at ~2, 4, 6, 8, 10 MiB.
    # One sample per 4 KiB: 11 MiB is ~2800 samples (1 sigma ~2%), so the end
    # estimate is far from 10 and 12 MiB.
    if sorted(numbered) != [1, 2, 3, 4, 5]:
        fail("expected growth dumps .1 .. .5, found %s" % sorted(os.path.basename(f) for f in dumps))
    sizes = []
    for k in range(1, 6):
        got = by_site(parse(numbered[k]), ["site_grow"])
        sizes.append(got["site_grow"])
        if abs(got["site_grow"] - 2 * k * MIB) > 0.15 * 2 * k * MIB:
            fail("growth dump %d: site_grow %.2f MiB, expected ~%d MiB" % (k, got["site_grow"] / MIB, 2 * k))
    print("growth dumps (MiB of site_grow): " + ", ".join("%.2f" % (b / MIB) for b in sizes))
    if any(sizes[i + 1] <= sizes[i] for i in range(4)):
        fail("growth dumps do not grow: %s" % sizes)
    print("PASS: 5 growth dumps, each larger (%s.1 .. .5)" % prefix)


def run_signal(program, outdir):
    clean(outdir, "signal*")
    base = os.path.join(outdir, "signal")
    env = dict(os.environ, SHARDALLOC_PROFILE=base, SHARDALLOC_PROFILE_RATE="16384",
               SHARDALLOC_PROFILE_SIGNAL="SIGUSR2")
    dump = base + ".signal.1"
    r = subprocess.run([program, "signal", dump], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("profile_dumps signal exited with %d (no dump after its allocations?): %s %s"
             % (r.returncode, r.stdout, r.stderr))
    print("profile_dumps: " + r.stdout.strip())
    got = by_site(parse(dump), ["site_hold"])
    # 4 MiB at one sample per 16 KiB: ~256 samples, 1 sigma ~6%.
    if abs(got["site_hold"] - 4 * MIB) > 0.3 * 4 * MIB:
        fail("signal dump: site_hold %.2f MiB, 4 MiB live" % (got["site_hold"] / MIB))
    if os.path.exists(base + ".signal.2"):
        fail("one signal, two dumps")
    print("PASS: signal dump %s holds site_hold (%.2f MiB)" % (dump, got["site_hold"] / MIB))


def real_python():
    return subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True).stdout.strip()


PY_WORKLOAD = r"""
import ctypes, os, sys
lib = ctypes.CDLL(None)
held = [("x%d" % i) * 8 for i in range(300000)]    # ~300000 strs of ~50 B
table = {i: [i, i + 1] for i in range(100000)}      # a dict and 100000 lists
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
if lib.shard_profile_write(fd) != 0:
    sys.exit("shard_profile_write failed")
os.close(fd)
print(len(held), len(table))
"""


def run_python(lib, outdir):
    py = real_python()
    if not py:
        skip("python3 is not installed")
    clean(outdir, "python*")
    mid = os.path.join(outdir, "python-mid.txt")
    env = dict(os.environ, SHARDALLOC_PROFILE=os.path.join(outdir, "python-exit.%p"),
               SHARDALLOC_PROFILE_RATE="65536", PYTHONMALLOC="malloc", LD_PRELOAD=lib)
    r = subprocess.run([py, "-c", PY_WORKLOAD, mid], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("python3 exited with %d: %s" % (r.returncode, r.stderr))
    prof = parse(mid)
    total = sum(b for _, b in prof)
    print("python mid-run profile: %d stacks, %.1f MiB" % (len(prof), total / MIB))
    # It holds ~30 MiB of strs alone (PYTHONMALLOC=malloc: each one a malloc).
    if total < 25 * MIB or total > 400 * MIB:
        fail("python mid-run profile: %.1f MiB, expected 25..400 MiB" % (total / MIB))
    named = sum(b for frames, b in prof if any(f.startswith("Py") or f.startswith("_Py") for f in frames))
    if named < total / 2:
        fail("python frames are not named (dladdr): %s" % prof[:3])
    exit_prof, leaks = exit_files(outdir, "python-exit")
    parse(exit_prof)
    if not open(leaks).read().startswith("shardalloc leak report: pid "):
        fail("python leak report has no header")
    print("PASS: python3 profiles %s, %s" % (mid, exit_prof))


def run_redis(lib, outdir):
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        skip("redis-server / redis-cli are not installed")
    clean(outdir, "redis*")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, SHARDALLOC_PROFILE=os.path.join(outdir, "redis-exit.%p"),
               SHARDALLOC_PROFILE_RATE="65536", LD_PRELOAD=lib)
    proc = subprocess.Popen([server, "--port", port, "--save", "", "--appendonly", "no"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run([cli, "-p", port, "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.1)
        else:
            fail("redis-server did not answer")
        # 50000 keys of 100 bytes, left in memory at exit.
        script = "".join("SET key:%d %s\n" % (i, "v" * 100) for i in range(50000))
        subprocess.run([cli, "-p", port], input=script, capture_output=True, text=True, timeout=120)
        subprocess.run([cli, "-p", port, "shutdown", "nosave"], capture_output=True, timeout=30)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    prof, _ = exit_files(outdir, "redis-exit")
    total = sum(b for _, b in parse(prof))
    print("redis exit profile: %.1f MiB live" % (total / MIB))
    # redis exits without freeing its keyspace: 50000 keys and values of ~100 bytes.
    if total < 4 * MIB or total > 200 * MIB:
        fail("redis exit profile: %.1f MiB, expected the keyspace (4..200 MiB)" % (total / MIB))
    print("PASS: redis-server profile " + prof)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    mode, what, outdir = sys.argv[1:]
    {"sites": run_sites, "python": run_python, "redis": run_redis, "growth": run_growth,
     "signal": run_signal}[mode](what, outdir)


if __name__ == "__main__":
    main()
