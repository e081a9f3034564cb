#!/usr/bin/env python3
"""tools/shardalloc-flamegraph (tests/profile/CMakeLists.txt).

  test_flamegraph.py TOOL PROFILE_SITES OUTDIR

On a synthetic profile: the SVG parses, has one box per distinct frame path,
widths proportional to bytes, names escaped. Symbolisation: a raw
"module+0xOFFSET" frame at site_small's address in PROFILE_SITES (from nm) is
named site_small (skipped without binutils). Then renders the profiles the
runs left in OUTDIR (sites-mid.txt, python-mid.txt) to OUTDIR/*.svg for
profile.chromium.
"""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run_tool(tool, *args):
    r = subprocess.run([sys.executable, tool] + list(args), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("%s %s: exit %d: %s" % (tool, " ".join(args), r.returncode, r.stderr))
    return r.stdout


def boxes(svg_path):
    root = ET.parse(svg_path).getroot()
    out = {}
    for g in root.iter(SVG + "g"):
        title = g.find(SVG + "title").text
        rect = g.find(SVG + "rect")
        name = title.rsplit(" (", 1)[0]
        out.setdefault(name, []).append(float(rect.get("width")))
    return out


def main():
    tool, sites, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    synth = os.path.join(outdir, "synthetic.txt")
    with open(synth, "w") as f:
        f.write("main;parse;read_line 3000\n")
        f.write("main;parse;<tok&en> 1000\n")
        f.write("main;render 4000\n")
        f.write("main;parse;read_line 2000\n")  # the same stack again: merged
    svg = os.path.join(outdir, "synthetic.svg")
    run_tool(tool, synth, "-o", svg, "--no-symbolize")
    b = boxes(svg)
    for name in ("all", "main", "parse", "read_line", "<tok&en>", "render"):
        if name not in b or len(b[name]) != 1:
            fail("synthetic.svg: expected one box %r, got %s" % (name, b.get(name)))
    total = b["all"][0]
    for name, share in (("main", 1.0), ("parse", 0.6), ("read_line", 0.5), ("render", 0.4),
                        ("<tok&en>", 0.1)):
        if abs(b[name][0] / total - share) > 0.002:
            fail("synthetic.svg: %s is %.3f of the width, expected %.3f" % (name, b[name][0] / total, share))
    print("synthetic profile: boxes and widths right")

    if shutil.which("addr2line") and shutil.which("nm"):
        nm = subprocess.run(["nm", sites], capture_output=True, text=True).stdout
        m = re.search(r"^([0-9a-f]+) T site_small$", nm, re.M)
        if not m:
            fail("nm finds no site_small in " + sites)
        raw = os.path.join(outdir, "raw.txt")
        with open(raw, "w") as f:
            f.write("main;%s+0x%x 100\n" % (os.path.abspath(sites), int(m.group(1), 16) + 4))
        collapsed = os.path.join(outdir, "raw-symbolized.txt")
        run_tool(tool, raw, "-o", os.path.join(outdir, "raw.svg"), "--collapsed", collapsed)
        text = open(collapsed).read()
        if text != "main;site_small 100\n":
            fail("symbolised profile: %r, expected 'main;site_small 100'" % text)
        print("symbolisation: module+offset named site_small by addr2line")
    else:
        print("symbolisation not tested: binutils (addr2line, nm) not installed")

    for name in ("sites-mid", "python-mid"):
        prof = os.path.join(outdir, name + ".txt")
        if not os.path.exists(prof):
            fail("%s missing (profile.sites / profile.python_run make it)" % prof)
        svg = os.path.join(outdir, name + ".svg")
        print(run_tool(tool, prof, "-o", svg).strip())
        b = boxes(svg)
        if name == "sites-mid" and not {"site_small", "site_medium", "site_huge", "site_leak"} <= set(b):
            fail("sites-mid.svg lacks a site box: %s" % sorted(b))
        if len(b) < 5:
            fail("%s has only %d boxes" % (svg, len(b)))
    print("PASS: flame graphs in " + outdir)


if __name__ == "__main__":
    main()
