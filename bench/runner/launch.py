"""One benchmark process through bench-launch: wall time, peak RSS, exit
status and the reason of a failure."""

import os
import shutil
import time

from .common import say, tail


def parse_report(text):
    out = {}
    for tok in text.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = v
    return out


def run_once(launcher, prog, preload, timeout, tmpdir, env_extra=None):
    """Runs one benchmark process (prog = argv list) through bench-launch;
    returns a dict (status ok/fail, wall_s, maxrss_kib, ...)."""
    out_p = os.path.join(tmpdir, "stdout")
    err_p = os.path.join(tmpdir, "stderr")
    rep_p = os.path.join(tmpdir, "report")
    if os.path.exists(rep_p):
        os.unlink(rep_p)
    argv = [launcher, "--timeout", "%g" % timeout, "--report", rep_p]
    if preload:
        argv += ["--preload", preload]
    argv += ["--"] + prog
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if env_extra:
        env.update(env_extra)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out_p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, err_p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(launcher, argv, env, file_actions=actions)
    deadline = t0 + timeout + 15.0
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            break
        if time.perf_counter() > deadline:  # the launcher itself is stuck
            os.kill(pid, 9)
            wpid, status, ru = os.wait4(pid, 0)
            break
        time.sleep(0.002)
    py_wall = time.perf_counter() - t0

    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    stdout, stderr, report = read(out_p), read(err_p), parse_report(read(rep_p))
    res = {
        "stdout": stdout.strip(),
        "stderr": stderr.strip()[-2000:],
        "launcher_wait4_maxrss_kib": ru.ru_maxrss,
        "wall_s": float(report.get("wall_s", py_wall)),
        "maxrss_kib": int(report.get("maxrss_kib", ru.ru_maxrss)),
        "utime_s": float(report.get("utime_s", ru.ru_utime)),
        "stime_s": float(report.get("stime_s", ru.ru_stime)),
    }
    reason = None
    if not report:
        reason = "launcher failed (status %d)" % status
    elif report.get("status") == "timeout":
        reason = "timeout after %gs" % timeout
    elif report.get("status") == "signal":
        sig = int(report.get("signal", 0))
        try:
            import signal as _signal
            name = _signal.Signals(sig).name
        except (ValueError, ImportError):
            name = "signal %d" % sig
        reason = "killed by %s" % name
    elif report.get("code") != "0":
        code = int(report.get("code", -1))
        reason = {3: "data corruption", 4: "out of memory", 5: "allocation outside the region",
                  127: "cannot execute"}.get(code, "exit code %d" % code)
    elif "cannot be preloaded" in stderr:
        reason = "LD_PRELOAD ignored by ld.so"
    if reason is not None:
        detail = tail(stderr) or tail(stdout)
        res["status"] = "fail"
        res["reason"] = reason + (": " + detail if detail else "")
    else:
        res["status"] = "ok"
    return res


def smoke_test(launcher, name, path, tmpdir):
    """Checks that a library preloads into a trivial program."""
    true = shutil.which("true") or "/bin/true"
    r = run_once(launcher, [true], path, 20, tmpdir)
    if r["status"] != "ok":
        say("SKIP %s: %s does not preload: %s" % (name, path, r.get("reason", "")))
        return False
    return True
