"""Report: the Markdown tables, the CSV, the gnuplot chart and the facts
about the machine written with the results."""

import csv
import datetime
import json
import shutil
import time
import os
import platform
import subprocess

from .common import ROOT, fmt, geomean, say, tail, warn
from .programs import python_exe
from .icount import icount_table
from .micro import micro_table
from .workloads import (DEBIAN_NAMES, ALLOCATOR_ORDER, PROGRAM_NAMES, REDIS_REQUESTS, REDIS_TESTS, REGION_ALLOCATORS,
                        REGION_NAMES, REGION_ORDER)


def row_kind(workload):
    if workload in REGION_NAMES:
        return "region"
    if workload.startswith("redis-") or workload in PROGRAM_NAMES:
        return "program"
    return "micro"


def markdown_tables(cells, allocators):
    """Returns (detail table, summary table, failures, extra sections {title: markdown})."""
    lines = ["| workload | T | allocator | time (s) | spread | peak RSS (MiB) | time/glibc | time/mimalloc "
             "| RSS/glibc | RSS/mimalloc |",
             "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
    for c in cells:
        if c["status"] != "ok":
            short = c["note"].split(":")[0]
            lines.append("| %s | %d | %s | FAIL (%s) | | | | | | |" % (c["workload"], c["threads"], c["allocator"], short))
            continue
        spread = (c["max_time_s"] - c["min_time_s"]) / c["median_time_s"] * 100 if c["median_time_s"] else 0
        lines.append("| %s | %d | %s | %.3f | %.0f%% | %.1f | %s | %s | %s | %s |" % (
            c["workload"], c["threads"], c["allocator"], c["median_time_s"], spread,
            c["median_rss_kib"] / 1024.0, fmt(c["time_vs_glibc"], ".2f"), fmt(c["time_vs_mimalloc"], ".2f"),
            fmt(c["rss_vs_glibc"], ".2f"), fmt(c["rss_vs_mimalloc"], ".2f")))
    detail = "\n".join(lines)

    lines = ["| allocator | rows | cells ok | FAIL | time/glibc (geomean) | time/mimalloc (geomean) "
             "| RSS/glibc (geomean) | RSS/mimalloc (geomean) |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    groups = [("all", lambda c: True), ("synthetic", lambda c: row_kind(c["workload"]) == "micro"),
              ("programs", lambda c: row_kind(c["workload"]) == "program")]
    for a in allocators:
        for gname, pred in groups:
            if a in REGION_ALLOCATORS and gname != "all":
                continue
            cs = [c for c in cells if c["allocator"] == a and pred(c)]
            if not cs or (gname != "all" and len(cs) == len([c for c in cells if c["allocator"] == a])):
                continue  # no rows, or the group is the whole set (already shown as "all")
            ok = [c for c in cs if c["status"] == "ok"]
            lines.append("| %s | %s | %d | %d | %s | %s | %s | %s |" % (
                a, "region" if a in REGION_ALLOCATORS else gname, len(ok), len(cs) - len(ok),
                fmt(geomean([c["time_vs_glibc"] for c in ok]), ".2f"),
                fmt(geomean([c["time_vs_mimalloc"] for c in ok]), ".2f"),
                fmt(geomean([c["rss_vs_glibc"] for c in ok]), ".2f"),
                fmt(geomean([c["rss_vs_mimalloc"] for c in ok]), ".2f")))
    summary = "\n".join(lines)
    failures = ["- %s T=%d %s: %s" % (c["workload"], c["threads"], c["allocator"], c["note"])
                for c in cells if c["status"] != "ok"]

    extra = {}
    # region table: one line per (workload, T), the three variants side by side
    idx = {(c["workload"], c["threads"], c["allocator"]): c for c in cells}
    rkeys = list(dict.fromkeys((c["workload"], c["threads"]) for c in cells if c["allocator"] in REGION_ALLOCATORS))
    if rkeys:
        present = [a for a in REGION_ORDER if any((w, t, a) in idx for w, t in rkeys)]
        head = "| workload | T | " + " | ".join("%s (s)" % a for a in present) + " | " + \
               " | ".join("%s RSS (MiB)" % a for a in present) + " | lock-free / mutex | lock-free / mimalloc-region |"
        lines = [head, "|---|--:|" + "--:|" * (2 * len(present) + 2)]
        for w, t in rkeys:
            row = []
            for key in ("median_time_s", "median_rss_kib"):
                for a in present:
                    c = idx.get((w, t, a))
                    if c is None:
                        row.append("-")
                    elif c["status"] != "ok":
                        row.append("FAIL")
                    else:
                        row.append("%.3f" % c[key] if key == "median_time_s" else "%.1f" % (c[key] / 1024.0))
            sc = idx.get((w, t, "shardalloc-region"))
            row.append(fmt(sc.get("time_vs_mutex") if sc else None, ".2f"))
            row.append(fmt(sc.get("time_vs_mimalloc") if sc else None, ".2f"))
            lines.append("| %s | %d | %s |" % (w, t, " | ".join(row)))
        extra["Region API (ArceOS tests over a 512 MiB region)"] = "\n".join(lines)
    # redis table: requests per second
    redis_rows = [("redis-" + t) for t in REDIS_TESTS]
    present = [a for a in ALLOCATOR_ORDER if any((w, 1, a) in idx for w in redis_rows)]
    if present:
        lines = ["| test | " + " | ".join("%s (req/s)" % a for a in present) + " | shardalloc/mimalloc (throughput) |",
                 "|---|" + "--:|" * (len(present) + 1)]
        for w in redis_rows:
            row = []
            for a in present:
                c = idx.get((w, 1, a))
                row.append("FAIL" if c is None or c["status"] != "ok" else "%.0f" % c.get("median_ops_s", 0))
            s_c, m_c = idx.get((w, 1, "shardalloc")), idx.get((w, 1, "mimalloc"))
            thr = None
            if s_c and m_c and s_c["status"] == "ok" and m_c["status"] == "ok" and m_c.get("median_ops_s"):
                thr = s_c["median_ops_s"] / m_c["median_ops_s"]
            row.append(fmt(thr, ".2f"))
            lines.append("| %s | %s |" % (w[len("redis-"):], " | ".join(row)))
        extra["redis (redis-benchmark, %d requests per test, pipeline 16)" % REDIS_REQUESTS] = "\n".join(lines)
    return detail, summary, failures, extra


CSV_FIELDS = ["workload", "threads", "allocator", "status", "reps", "reps_ok", "median_time_s", "min_time_s",
              "max_time_s", "median_rss_kib", "time_vs_glibc", "time_vs_mimalloc", "rss_vs_glibc",
              "rss_vs_mimalloc", "median_ops_s", "time_vs_mutex", "note"]


def write_csv(path, cells):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for c in cells:
            w.writerow({k: ("" if c.get(k) is None else c.get(k)) for k in CSV_FIELDS})


def draw_chart(gnuplot, cells, allocators, groups, base_path, log):
    """Clustered bars of time and peak RSS relative to glibc (log scale), one
    cluster per (workload, threads) in groups. Returns the written files."""
    if "glibc" not in allocators:
        say("SKIP chart: needs glibc as the baseline")
        return []
    others = [a for a in allocators if a != "glibc" and a in ALLOCATOR_ORDER]
    if not others:
        return []
    index = {(c["workload"], c["threads"], c["allocator"]): c for c in cells}
    groups = [(w, t) for w, t in groups if (w, t, "glibc") in index]
    if not groups:
        return []
    dat = base_path + ".dat"
    with open(dat, "w") as f:
        f.write("group " + " ".join(others) + " " + " ".join(o + "_rss" for o in others) + "\n")
        for w, t in groups:
            row = [("%s/%d" % (w, t))]
            for key in ("time_vs_glibc", "rss_vs_glibc"):
                for a in others:
                    c = index.get((w, t, a))
                    v = c.get(key) if c else None
                    row.append("NaN" if v is None else "%.4f" % v)
            f.write(" ".join(row) + "\n")
    n = len(others)
    plot_time = ", ".join("'%s' using %d:xtic(1) title '%s'" % (dat, 2 + i, others[i]) for i in range(n))
    plot_rss = ", ".join("'%s' using %d:xtic(1) title '%s'" % (dat, 2 + n + i, others[i]) for i in range(n))
    width = max(1000, 60 + len(groups) * (14 * n + 16))
    common = """
set datafile missing 'NaN'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set grid ytics
set key outside top right
set xtics rotate by -50 font ',9' nomirror
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 front
set bmargin 7
"""
    body = """
set multiplot layout 2,1 title '%s'
set ylabel 'wall time / glibc (lower is better)'
plot %s
set ylabel 'peak RSS / glibc (lower is better)'
plot %s
unset multiplot
""" % ("shardalloc bench: median of runs, relative to glibc (log scale)", plot_time, plot_rss)
    written = []
    terminals = [("svg", "set terminal svg size %d,900 dynamic background '#ffffff' font 'sans,11'" % width, ".svg")]
    test = subprocess.run([gnuplot, "-e", "set terminal pngcairo"], capture_output=True, text=True)
    if test.returncode == 0 and not test.stderr.strip():
        terminals.append(("png", "set terminal pngcairo size %d,900 font 'sans,9'" % width, ".png"))
    for _, term, ext in terminals:
        out = base_path + ext
        script = "%s\nset output '%s'\n%s\n%s\nunset output\n" % (term, out, common, body)
        gp = base_path + ext + ".gp"
        with open(gp, "w") as f:
            f.write(script)
        r = subprocess.run([gnuplot, gp], capture_output=True, text=True)
        log.write("$ gnuplot %s\n%s%s" % (gp, r.stdout, r.stderr))
        os.unlink(gp)
        if r.returncode == 0 and os.path.exists(out) and os.path.getsize(out) > 0:
            written.append(out)
        else:
            warn("gnuplot failed for %s: %s" % (ext, tail(r.stderr)))
    os.unlink(dat)
    return written


def package_versions():
    pkgs = ["libc6", "libmimalloc2.0", "libmimalloc-dev", "libjemalloc2", "libtcmalloc-minimal4", "redis-server",
            "redis-tools", "valgrind", "lua5.4", "sqlite3", "ruby3.1", "z3", "ghostscript",
            "g++-12", "libbenchmark-dev", "python3.11", "g++", "cmake"]
    out = {}
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"] + pkgs,
                           capture_output=True, text=True, timeout=20)
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def git_commit():
    """Short hash of the checked-out commit (uncommitted edits are not shown), or None."""
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    """CPU model, memory, kernel, compiler and the commit under test (best effort)."""
    info = {"kernel": platform.release(), "machine": platform.machine()}

    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_gib"] = round(int(line.split()[1]) / 1048576.0, 1)
                    break
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    info["compiler"] = first_line(["c++", "--version"])
    info["python_workload_interpreter"] = python_exe()
    info["python_workload_version"] = first_line([python_exe(), "--version"])
    return info


class Start:
    """The facts taken when a run starts: file names, time, load, commit."""

    def __init__(self, base):
        self.base = base
        self.log_path = base + ".log"
        self.time = time.time()
        self.load = os.getloadavg()
        self.commit = git_commit()  # the tree that gets built (others may commit during a long run)


def report_sections(args, nproc, thread_list, reps, cells, allocators, icount, micro):
    """(header, [(title, markdown)], failure lines) of a run."""
    detail, summary, failures, extra = markdown_tables(cells, allocators)
    header = "shardalloc bench, %s mode: %d CPUs, threads %s, %d reps, medians; ratios < 1 are better than the baseline" % (
        args.mode, nproc, ",".join(map(str, thread_list)), reps)
    sections = []
    if cells:
        notes = []
        if any(c["allocator"] in REGION_ALLOCATORS for c in cells):
            notes.append("region rows: time/mimalloc and RSS/mimalloc are relative to mimalloc-region")
        if any(c["workload"].startswith("redis-") for c in cells):
            notes.append("redis rows: time = %d requests / (requests per second), RSS = the server's peak; "
                         "the glibc row preloads libc.so.6 (Debian's redis-server is linked with jemalloc)"
                         % REDIS_REQUESTS)
        if any(c["workload"] in DEBIAN_NAMES for c in cells):
            notes.append("Debian program rows (%s): every run's output equals an untimed reference run's (glibc, no "
                         "preload) and passes the input generator's check, else the run is FAIL (wrong output)"
                         % ", ".join(w for w in DEBIAN_NAMES if any(c["workload"] == w for c in cells)))
        sections.append(("", detail + "".join("\n\n" + n[0].upper() + n[1:] + "." for n in notes) + "\n\n" + summary))
        for title, text in extra.items():
            sections.append((title, text))
    if icount is not None:
        sections.append(("Instruction counts", icount_table(icount) if icount else "(not run)"))
    if micro is not None:
        sections.append(("Micro-benchmarks (bench-micro, Google Benchmark)", micro_table(micro)))
    return header, sections, failures


def print_report(header, cells, sections, failures):
    say()
    if cells:
        say(header)
    for title, text in sections:
        say()
        if title:
            say("## " + title)
            say()
        say(text)
    if failures:
        say()
        say("Failures:")
        for f in failures:
            say(f)


def run_metadata(args, started, nproc, thread_list, reps, timeout, scales, libs, region_allocs, bench_dir):
    """The "meta" object of the JSON file."""
    minfo = machine_info()
    minfo["commit"] = started.commit
    minfo["commit_at_end"] = git_commit()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "mode": args.mode, "sections_only": args.sections_only, "cpus": nproc, "threads": thread_list,
        "reps": reps, "timeout_s": timeout,
        "scale_factor": args.scale, "scales": scales,
        "host": platform.node(), "kernel": platform.release(), "machine": platform.machine(),
        "machine_info": minfo, "python": platform.python_version(), "allocators": libs,
        "region_allocators": {a: REGION_ALLOCATORS[a] for a in region_allocs}, "packages": package_versions(),
        "bench_dir": bench_dir, "elapsed_s": round(time.time() - started.time, 1),
        "loadavg_start": [round(x, 2) for x in started.load],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "rss_note": "maxrss_kib is the benchmark's ru_maxrss from wait4() in bench-launch; "
                    "launcher_wait4_maxrss_kib is os.wait4() on the launcher (includes the runner's RSS floor); "
                    "for redis rows it is the server's VmHWM",
    }


def write_markdown(path, title, meta, sections, failures, charts):
    minfo = meta["machine_info"]
    with open(path, "w") as f:
        f.write("# %s\n\ncommit %s, %s, load average %.1f at start, %.1f at end\n" % (
            title,
            (minfo.get("commit") or "?") + ("" if minfo.get("commit_at_end") == minfo.get("commit")
                                            else " (HEAD was %s at the end)" % minfo.get("commit_at_end")),
            meta["date"],
            meta["loadavg_start"][0], meta["loadavg_end"][0]))
        for title, text in sections:
            f.write("\n%s%s\n" % ("## %s\n\n" % title if title else "", text))
        if failures:
            f.write("\nFailures:\n\n" + "\n".join(failures) + "\n")
        for c in charts:
            if c.endswith(".svg"):
                f.write("\n![chart](%s)\n" % os.path.basename(c))


def publish(args, started, mode_tag, nproc, thread_list, reps, timeout, scales, cells, runs, allocators,
            region_allocs, libs, icount, micro, gnuplot, bench_dir):
    """Prints the tables and writes the .md, .csv, .json and chart files
    (copied to latest.* unless only --icount / --micro ran). Returns the
    failure lines."""
    base = started.base
    header, sections, failures = report_sections(args, nproc, thread_list, reps, cells,
                                                 allocators + region_allocs, icount, micro)
    print_report(header, cells, sections, failures)
    charts = []
    with open(started.log_path, "a") as log:
        if gnuplot and cells:
            groups = list(dict.fromkeys((c["workload"], c["threads"]) for c in cells))
            charts = draw_chart(gnuplot, cells, allocators, groups, base, log)
    write_csv(base + ".csv", cells)
    meta = run_metadata(args, started, nproc, thread_list, reps, timeout, scales, libs, region_allocs, bench_dir)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": cells, "runs": runs, "icount": icount, "micro": micro}, f, indent=1)
    write_markdown(base + ".md", header if cells else "shardalloc bench: " + mode_tag, meta, sections, failures,
                   charts)
    outputs = [base + ext for ext in (".md", ".csv", ".json")] + charts
    if not args.sections_only:
        for path in outputs:
            ext = path[len(base):]
            shutil.copyfile(path, os.path.join(args.out, "latest" + ext))
    say()
    say("results: %s%s" % (
        ", ".join(os.path.relpath(p, ROOT) for p in outputs + [started.log_path]),
        " (also copied to %s/latest.*)" % os.path.relpath(args.out, ROOT) if not args.sections_only else ""))
    say("total time %.0f s; %d FAIL cell(s)" % (time.time() - started.time, len(failures)))
    return failures
