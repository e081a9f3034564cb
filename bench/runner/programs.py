"""Real programs: the empty program (start-up), the Python workload's
interpreter, redis-server driven by redis-benchmark, and Debian programs
(lua, sqlite3, ruby, z3, ghostscript, g++) on generated inputs."""

import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time

from .common import median, say, tail
from .inputs import GENERATORS
from .launch import run_once
from .workloads import REDIS_REQUESTS, REDIS_TESTS, STARTUP_LAUNCHES


def run_startup(launcher, preload, timeout, tmpdir):
    """STARTUP_LAUNCHES runs of /bin/true under the allocator; one result with
    the median wall time and the median peak RSS of the launches."""
    true = shutil.which("true") or "/bin/true"
    launches = []
    for _ in range(STARTUP_LAUNCHES):
        r = run_once(launcher, [true], preload, timeout, tmpdir)
        if r["status"] != "ok":
            return r
        launches.append(r)
    res = dict(launches[0])
    for key in ("wall_s", "maxrss_kib", "utime_s", "stime_s"):
        res[key] = median([r[key] for r in launches])
    res["maxrss_kib"] = int(res["maxrss_kib"])
    res["launches"] = len(launches)
    res["stdout"] = "startup: %d launches of %s, median wall %.6f s, median peak RSS %d KiB" % (
        len(launches), true, res["wall_s"], res["maxrss_kib"])
    return res


def python_exe():
    """The interpreter for the Python workload: Debian's /usr/bin/python3 when
    present (a plain distro build), else the one running this script."""
    for cand in ("/usr/bin/python3",):
        if os.access(cand, os.X_OK):
            return cand
    return sys.executable


def free_port():
    """A random high TCP port on 127.0.0.1 that nothing listens on now."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randint(20000, 60999)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sk:
            try:
                sk.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return None


def redis_request(port, payload, timeout=2.0):
    """Sends raw RESP bytes to 127.0.0.1:port; returns the first reply bytes (b'' if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sk:
        sk.sendall(payload)
        try:
            return sk.recv(256)
        except OSError:
            return b""


def read_vmhwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def parse_redis_benchmark(text):
    """{test: requests per second} from redis-benchmark -q output."""
    out = {}
    for chunk in re.split(r"[\r\n]+", text):
        m = re.match(r"\s*([A-Za-z_0-9]+)[^:]*:\s*([0-9.]+) requests per second", chunk)
        if m:
            out[m.group(1).lower()] = float(m.group(2))
    return out


def run_redis(preload, timeout, tmpdir, log):
    """Starts redis-server (with LD_PRELOAD=preload) on a random port of
    127.0.0.1, runs redis-benchmark against it, shuts it down. Returns
    {test: result dict} for REDIS_TESTS (all failing alike on error)."""
    server_exe, bench_exe = shutil.which("redis-server"), shutil.which("redis-benchmark")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    senv = dict(env)
    if preload:
        senv["LD_PRELOAD"] = preload
    port = free_port()
    rdir = os.path.join(tmpdir, "redis")
    os.makedirs(rdir, exist_ok=True)
    srv_log = os.path.join(rdir, "server.log")

    def fail(reason):
        return {t: {"status": "fail", "reason": reason, "wall_s": 0.0, "maxrss_kib": 0, "stdout": "",
                    "stderr": ""} for t in REDIS_TESTS}

    if port is None:
        return fail("no free port")
    t0 = time.perf_counter()
    with open(srv_log, "w") as slog:
        server = subprocess.Popen(
            [server_exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--protected-mode", "yes", "--dir", rdir, "--logfile", ""],
            stdin=subprocess.DEVNULL, stdout=slog, stderr=subprocess.STDOUT, env=senv)
    results = None
    try:
        deadline = time.perf_counter() + 15.0
        ready = False
        while time.perf_counter() < deadline and server.poll() is None:
            try:
                if redis_request(port, b"PING\r\n", 0.5).startswith(b"+PONG"):
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if not ready:
            results = fail("redis-server did not start (exit %s): %s" % (server.poll(), tail(open(srv_log).read())))
            return results
        if preload:
            try:
                with open("/proc/%d/maps" % server.pid) as f:
                    maps = f.read()
            except OSError:
                maps = ""
            if os.path.realpath(preload) not in maps and preload not in maps:
                results = fail("LD_PRELOAD ignored by ld.so (library not mapped in redis-server)")
                return results
        cmd = [bench_exe, "-h", "127.0.0.1", "-p", str(port), "-q", "-n", str(REDIS_REQUESTS),
               "-t", ",".join(REDIS_TESTS), "-P", "16"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            results = fail("redis-benchmark timeout after %gs" % timeout)
            return results
        rps = parse_redis_benchmark(r.stdout)
        hwm = read_vmhwm(server.pid)
        alive = server.poll() is None
        log.write("  redis-benchmark: %s\n" % " | ".join("%s=%s" % kv for kv in rps.items()))
        results = {}
        for t in REDIS_TESTS:
            v = rps.get(t)
            if not alive:
                results[t] = {"status": "fail", "reason": "redis-server died: %s" % tail(open(srv_log).read())}
            elif r.returncode != 0 or not v:
                results[t] = {"status": "fail",
                              "reason": "redis-benchmark failed (exit %d): %s" % (r.returncode, tail(r.stderr or r.stdout))}
            else:
                results[t] = {"status": "ok", "ops_s": v, "wall_s": REDIS_REQUESTS / v}
            results[t].update(maxrss_kib=hwm, stdout="", stderr="", server_port=port)
            results[t].setdefault("wall_s", 0.0)
        return results
    finally:
        try:
            redis_request(port, b"SHUTDOWN NOSAVE\r\n", 2.0)
        except OSError:
            pass
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()  # our own child, by its pid
            server.wait()
        if results is not None:
            total = time.perf_counter() - t0
            for res in results.values():
                res["elapsed_s"] = round(total, 3)


# ------------------------------------------------------- Debian programs

class Prepared:
    """A Debian program row ready to run: its task (inputs.Task), the digest
    of the reference run's output, or why the reference run failed."""

    def __init__(self, name, task, reference=None, error=None):
        self.name, self.task, self.reference, self.error = name, task, reference, error


def output_digest(stdout, out_file):
    """sha256 over the standard output and the bytes of out_file (if any)."""
    h = hashlib.sha256(stdout.encode("utf-8", "replace"))
    if out_file:
        with open(out_file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def check_output(task, res):
    """Turns an ok run into a failure when its output is wrong; returns the digest."""
    problem = task.check(res["stdout"])
    digest = None
    if problem is None and task.out_file and not os.path.exists(task.out_file):
        problem = "no output file %s" % task.out_file
    if problem is None:
        digest = output_digest(res["stdout"], task.out_file)
    if problem is not None:
        res["status"] = "fail"
        res["reason"] = "wrong output: " + problem
    return digest


def prepare_debian(name, scale, launcher, timeout, tmpdir):
    """Generates the row's input and runs it once untimed without a preload
    (glibc): the reference every timed run's output must equal."""
    d = os.path.join(tmpdir, "prog-" + name)
    os.makedirs(d, exist_ok=True)
    task = GENERATORS[name](d, scale)
    res = run_debian(Prepared(name, task), launcher, None, timeout, tmpdir)
    if res["status"] != "ok":
        say("%s: the reference run (glibc) failed: %s" % (name, res["reason"]))
        return Prepared(name, task, error="reference run (glibc) failed: " + res["reason"])
    say("%s: reference output (glibc) sha256 %s, %.2f s" % (name, res["output_sha256"][:16], res["wall_s"]))
    return Prepared(name, task, reference=res["output_sha256"])


def run_debian(prep, launcher, preload, timeout, tmpdir):
    """One run of a Debian program row; a wrong output fails the run."""
    if prep.error:
        return {"status": "fail", "reason": prep.error, "wall_s": 0.0, "maxrss_kib": 0, "stdout": "", "stderr": ""}
    task = prep.task
    if task.out_file and os.path.exists(task.out_file):
        os.unlink(task.out_file)  # a stale file must not pass for this run's output
    res = run_once(launcher, task.argv, preload, timeout, tmpdir)
    if res["status"] == "ok":
        digest = check_output(task, res)
        if digest is not None:
            res["output_sha256"] = digest
            if prep.reference is not None and digest != prep.reference:
                res["status"] = "fail"
                res["reason"] = "wrong output: differs from the reference run (glibc, no preload)"
    res["stdout"] = res["stdout"][-300:]  # the log and the JSON keep the end only
    return res
