"""Dependencies: the peers, gnuplot and the bench-only Debian packages,
installed with apt-get when missing (bench/run's dependency step)."""

import os
import shutil
import subprocess

from .common import ROOT, find_lib, say, warn
from .workloads import GNUPLOT_PACKAGE, PEERS, REDIS_PACKAGES, VALGRIND_PACKAGE


def apt_install(packages, log_path):
    """apt-get install -y PACKAGES (apt-get update and retry once on failure)."""
    if not packages:
        return True
    if shutil.which("apt-get") is None:
        warn("apt-get not found; cannot install %s" % " ".join(packages))
        return False
    if os.geteuid() != 0:
        warn("not root; cannot apt-get install %s" % " ".join(packages))
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y"] + packages
    say("installing: %s (log: %s)" % (" ".join(packages), os.path.relpath(log_path, ROOT)))
    with open(log_path, "a") as log:
        log.write("$ %s\n" % " ".join(cmd))
        log.flush()
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode == 0:
            return True
        log.write("$ apt-get update\n")
        log.flush()
        subprocess.run(["apt-get", "update"], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.write("$ %s\n" % " ".join(cmd))
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode == 0


def ensure_dependencies(args, wanted_peers, log_path, want_redis=False, want_valgrind=False, want_programs=()):
    """Returns ({peer: path}, gnuplot path or None), installing what is missing
    (peers, gnuplot, and redis-server/redis-tools, valgrind or the Debian
    programs in want_programs, [(executable, [packages])], when asked for)."""
    missing_pkgs = []
    for name in wanted_peers:
        soname, pkg = PEERS[name]
        if find_lib(soname) is None:
            missing_pkgs.append(pkg)
    want_chart = not args.no_chart and not args.sections_only
    if want_chart and shutil.which("gnuplot") is None:
        missing_pkgs.append(GNUPLOT_PACKAGE)
    if want_redis and (shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None):
        missing_pkgs += REDIS_PACKAGES
    if want_valgrind and shutil.which("valgrind") is None:
        missing_pkgs.append(VALGRIND_PACKAGE)
    for exe, pkgs in want_programs:
        if shutil.which(exe) is None:
            missing_pkgs += [p for p in pkgs if p not in missing_pkgs]
    if missing_pkgs:
        if args.no_install:
            say("missing packages (not installing, --no-install): %s" % " ".join(missing_pkgs))
        elif not apt_install(missing_pkgs, log_path):
            warn("apt-get install %s failed (see %s)" % (" ".join(missing_pkgs), os.path.relpath(log_path, ROOT)))
    peers = {}
    for name in wanted_peers:
        soname, pkg = PEERS[name]
        path = find_lib(soname)
        if path is None:
            say("SKIP %s: %s not found (Debian package %s not installed)" % (name, soname, pkg))
        else:
            peers[name] = path
    gnuplot = shutil.which("gnuplot") if want_chart else None
    if want_chart and gnuplot is None:
        say("SKIP chart: gnuplot not available (Debian package %s)" % GNUPLOT_PACKAGE)
    return peers, gnuplot
