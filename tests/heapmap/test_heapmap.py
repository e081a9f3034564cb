"""Unit tests of tools/shardalloc-heapmap on synthetic snapshots (stdlib unittest).

Run: python3 tests/heapmap/test_heapmap.py [path/to/shardalloc-heapmap]
"""
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-")
                       else os.path.join(HERE, "..", "..", "tools", "shardalloc-heapmap"))
if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
    del sys.argv[1]

loader = importlib.machinery.SourceFileLoader("heapmap", TOOL)
spec = importlib.util.spec_from_loader("heapmap", loader)
heapmap = importlib.util.module_from_spec(spec)
loader.exec_module(heapmap)

SVG_NS = "{http://www.w3.org/2000/svg}"

SNAPSHOT = """\
shardalloc-snapshot 1 domain=region pid=42 segment_size=524288 small_page_size=65536 pages_per_small_segment=8 \
classes=53 reserved_bytes=16777216 segments=9 peak_segments=12
heap id=0 addr=0x1000 owned=1 abandoned=0 segments=2
heap id=1 addr=0x2000 owned=0 abandoned=1 segments=1
arena id=0 base=0x7f0000080000 slots=30 mem_start=0x7f0000000000 mem_end=0x7f0001000000
slot arena=0 slot=0 kind=meta span=1
slot arena=0 slot=1 kind=small span=1 heap=0 abandoned=0 page_count=8 used_pages=2 page_size=65536
page arena=0 slot=1 index=0 class=11 block_size=112 used=300 remote=0 capacity=400 reserved=576 full=0 area=0x7f0000100400
page arena=0 slot=1 index=3 class=1 block_size=8 used=8192 remote=0 capacity=8192 reserved=8192 full=1 area=0x7f0000130000
slot arena=0 slot=2 kind=medium span=1 heap=0 abandoned=0 page_count=2 used_pages=1 page_size=262144
page arena=0 slot=2 index=1 class=40 block_size=16384 used=3 remote=1 capacity=8 reserved=16 full=0 area=0x7f0000140000
slot arena=0 slot=3 kind=huge span=5 block_size=2096128 used=1 area=0x7f0000180400
slot arena=0 slot=8 kind=small span=1 heap=1 abandoned=1 page_count=8 used_pages=1 page_size=65536
page arena=0 slot=8 index=0 class=3 block_size=24 used=5 remote=5 capacity=170 reserved=2688 full=0 area=0x7f0000400400
slot arena=0 slot=9 kind=large span=1 heap=0 abandoned=0 page_count=1 used_pages=1 page_size=524288
page arena=0 slot=9 index=0 class=50 block_size=98304 used=2 remote=0 capacity=5 reserved=5 full=0 area=0x7f0000480400
slot arena=0 slot=10 kind=7 span=1 heap=-1 abandoned=0 page_count=1 used_pages=0 page_size=524288
free arena=0 slot=11 count=19
some-future-record x=1
end heaps=2 arenas=1 slots=30
"""


def run_tool(*args, stdin=None):
    return subprocess.run([sys.executable, TOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)


class ParseTest(unittest.TestCase):
    def test_parses_every_record(self):
        header, heaps, arenas = heapmap.parse(SNAPSHOT)
        self.assertEqual(header["domain"], "region")
        self.assertEqual(header["reserved_bytes"], 16 << 20)
        self.assertEqual(sorted(heaps), [0, 1])
        self.assertTrue(heaps[1]["abandoned"])
        self.assertEqual(len(arenas), 1)
        kinds = [it["kind"] for it in arenas[0]["items"]]
        self.assertEqual(kinds, ["meta", "small", "medium", "huge", "small", "large", 7, "free"])
        small = arenas[0]["items"][1]
        self.assertEqual([p["class"] for p in small["pages"]], [11, 1])
        self.assertEqual(arenas[0]["items"][-1]["span"], 19)

    def test_summary_counts_live_and_remote(self):
        summary = heapmap.summarize(*heapmap.parse(SNAPSHOT))
        self.assertEqual(summary["pages"], 5)
        self.assertEqual(summary["remote_blocks"], 6)
        self.assertEqual(summary["used_blocks"], 300 + 8192 + 2 + 0 + 2)
        self.assertEqual(summary["abandoned_segments"], 1)
        self.assertEqual(summary["abandoned_heaps"], 1)
        self.assertEqual(summary["huge_bytes"], 2096128)

    def test_errors(self):
        for text, what in (("", "empty"), ("heap id=0\n", "not a shardalloc snapshot"),
                           ("shardalloc-snapshot 2\nend\n", "unsupported"),
                           (SNAPSHOT.replace("end heaps=2 arenas=1 slots=30\n", ""), "truncated")):
            with self.assertRaises(heapmap.SnapshotError) as cm:
                heapmap.parse(text)
            self.assertIn(what, str(cm.exception))


class RenderTest(unittest.TestCase):
    def render(self, *extra):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "snap.txt")
            with open(src, "w") as f:
                f.write(SNAPSHOT)
            r = run_tool(src, *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = os.path.join(d, "snap.svg" if "--svg" in extra else "snap.html")
            with open(out) as f:
                return f.read(), r.stdout

    def svg_root(self, text):
        start = text.index("<svg")
        end = text.index("</svg>") + len("</svg>")
        return ET.fromstring(text[start:end])

    def test_html_holds_well_formed_svg(self):
        text, stdout = self.render()
        self.assertTrue(text.startswith("<!DOCTYPE html>"))
        self.assertIn("1 abandoned", stdout)
        root = self.svg_root(text)
        titles = [t.text for t in root.iter(SVG_NS + "title")]
        # One tooltip per page (the remote-free corners repeat theirs).
        self.assertEqual(len([t for t in titles if t and " page " in t and "class" in t]), 5 + 2)
        self.assertTrue(any("huge block of 2.0 MiB" in (t or "") for t in titles))
        self.assertTrue(any("5 block(s) freed by other threads" in (t or "") for t in titles))
        texts = " ".join(t.text or "" for t in root.iter(SVG_NS + "text"))
        for want in ("arena 0", "slot 8: small, heap 1 (abandoned)", "slot 0: metadata", "slots 11-29: free",
                     "medium segment (2 pages of 256 KiB)", "large segment (one page)", "class 11: 112 B",
                     "legend", "112B 52%"):
            self.assertIn(want, texts)
        # Abandoned segments carry the hatch pattern.
        fills = [r.get("fill") for r in root.iter(SVG_NS + "rect")]
        self.assertIn("url(#abandoned)", fills)

    def test_bare_svg(self):
        text, _ = self.render("--svg")
        self.assertTrue(text.startswith("<svg"))
        self.svg_root(text)

    def test_stdin_and_bad_input(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "x.html")
            r = run_tool("-", "-o", out, stdin=SNAPSHOT)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.getsize(out) > 1000)
            r = run_tool("-", "-o", out, stdin="garbage\n")
            self.assertEqual(r.returncode, 1)
            self.assertIn("not a shardalloc snapshot", r.stderr)
            r = run_tool(os.path.join(d, "missing.txt"))
            self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
