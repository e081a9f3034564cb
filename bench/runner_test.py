#!/usr/bin/env python3
"""Tests of bench/run's modules (bench/runner/), standard library only.

  bench/runner_test.py [path to bench-launch]

Without bench-launch the tests that start a process through it are skipped.
Run by ctest as bench.runner (bench/CMakeLists.txt). No timing is asserted.
"""

import csv
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)

from runner import execute, inputs, programs, report  # noqa: E402

LAUNCHER = sys.argv.pop(1) if len(sys.argv) > 1 else None


class CommandTest(unittest.TestCase):
    def run_cmd(self, *args):
        return subprocess.run([sys.executable, os.path.join(HERE, "run")] + list(args), capture_output=True,
                              text=True, timeout=60)

    def test_list_names_every_row(self):
        r = self.run_cmd("--list")
        self.assertEqual(r.returncode, 0, r.stderr)
        for row in ("larson", "region-basic", "python-malloc", "startup", "lua", "sqlite", "z3", "gxx"):
            self.assertIn("  " + row + " ", r.stdout)

    def test_unknown_workload_is_an_error(self):
        r = self.run_cmd("--workloads", "no-such-row", "--no-build")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown workload", r.stderr)


class ReportTest(unittest.TestCase):
    def test_table_and_csv_format(self):
        runs = []
        for a, t, rss in (("glibc", 1.0, 1024), ("shardalloc", 0.5, 2048), ("mimalloc", 0.8, 1024)):
            for rep in (1, 2, 3):
                runs.append({"workload": "lua", "threads": 1, "allocator": a, "rep": rep, "status": "ok",
                             "wall_s": t * rep, "maxrss_kib": rss})
        runs.append({"workload": "lua", "threads": 1, "allocator": "tcmalloc", "rep": 1, "status": "fail",
                     "reason": "wrong output: differs from the reference run (glibc, no preload)"})
        jobs = [execute.Job("lua", "debian", 1, ["glibc", "shardalloc", "mimalloc", "tcmalloc"])]
        cells = execute.cells_of(jobs, runs)
        detail, summary, failures, _ = report.markdown_tables(cells, ["glibc", "shardalloc", "mimalloc", "tcmalloc"])
        lines = detail.split("\n")
        self.assertTrue(lines[0].startswith("| workload | T | allocator | time (s) | spread | peak RSS (MiB) |"))
        self.assertIn("| lua | 1 | shardalloc | 1.000 | 100% | 2.0 | 0.50 | 0.62 | 2.00 | 2.00 |", lines)
        self.assertIn("| lua | 1 | tcmalloc | FAIL (wrong output) | | | | | | |", lines)
        self.assertEqual(len(failures), 1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "out.csv")
            report.write_csv(path, cells)
            with open(path) as f:
                rows = list(csv.DictReader(f))
        self.assertEqual([r["allocator"] for r in rows], ["glibc", "shardalloc", "mimalloc", "tcmalloc"])
        self.assertEqual(rows[3]["status"], "FAIL")


class InputsTest(unittest.TestCase):
    def test_same_scale_same_bytes(self):
        for name in ("sqlite", "z3", "gxx", "ghostscript", "lua", "ruby"):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                ta = inputs.GENERATORS[name](a, 0.05)
                inputs.GENERATORS[name](b, 0.05)
                fa = [x.split(" ", 1)[-1] for x in ta.argv]
                fa = [x for x in fa if x.startswith(a) and os.path.isfile(x)]
                self.assertTrue(fa, name)
                for pa in fa:
                    with open(pa, "rb") as f1, open(pa.replace(a, b), "rb") as f2:
                        self.assertEqual(f1.read(), f2.read(), name)

    def test_checks_reject_wrong_answers(self):
        with tempfile.TemporaryDirectory() as d:
            t = inputs.z3(d, 4.5 / inputs.PROBLEMS)  # 4 problems: 3 sat, 1 unsat
        self.assertIsNone(t.check("sat\nsat\nsat\nunsat"))
        self.assertIsNotNone(t.check("sat\nsat\nsat\nsat"))
        self.assertIsNotNone(t.check("sat\nsat\nsat"))


@unittest.skipIf(LAUNCHER is None, "no bench-launch given")
class OutputCheckTest(unittest.TestCase):
    def prepared(self, d, text, expect, reference=None):
        task = inputs.Task(["/bin/sh", "-c", "echo " + text], lambda out: None if out == expect else "bad")
        return programs.Prepared("t", task, reference=reference)

    def test_right_output_passes(self):
        with tempfile.TemporaryDirectory() as d:
            ref = programs.output_digest("42", None)
            r = programs.run_debian(self.prepared(d, "42", "42", ref), LAUNCHER, None, 20, d)
            self.assertEqual(r["status"], "ok", r.get("reason"))

    def test_output_unlike_the_reference_fails(self):
        with tempfile.TemporaryDirectory() as d:
            ref = programs.output_digest("43", None)
            r = programs.run_debian(self.prepared(d, "42", "42", ref), LAUNCHER, None, 20, d)
            self.assertEqual(r["status"], "fail")
            self.assertIn("differs from the reference", r["reason"])

    def test_wrong_answer_fails(self):
        with tempfile.TemporaryDirectory() as d:
            r = programs.run_debian(self.prepared(d, "41", "42"), LAUNCHER, None, 20, d)
            self.assertEqual(r["status"], "fail")
            self.assertIn("wrong output", r["reason"])

    def test_failed_reference_fails_the_row(self):
        with tempfile.TemporaryDirectory() as d:
            task = inputs.Task(["/bin/sh", "-c", "exit 3"], lambda out: None)
            r = programs.run_debian(programs.Prepared("t", task, error="reference run (glibc) failed: x"),
                                    LAUNCHER, None, 20, d)
            self.assertEqual(r["status"], "fail")


if __name__ == "__main__":
    unittest.main()
