"""The fixed inputs of the Debian programs run as bench rows.

Every input is generated here from a fixed seed and the row's scale, so a
run needs nothing from outside the repository and the same scale always
gives the same bytes. Each generator writes its files into a directory and
returns a Task: the command line, the file the program writes (whose bytes
are compared like its standard output), and a check of the standard output
that knows the right answer where the generator can compute it.
"""

import os
import random


PROBLEMS, NVARS, NCONS = 24, 250, 1000  # z3: 3-SAT at 4 clauses per variable


class Task:
    """argv: the command; out_file: a file the program writes (or None);
    check(stdout) -> None when right, else what is wrong."""

    def __init__(self, argv, check, out_file=None):
        self.argv, self.check, self.out_file = argv, check, out_file


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def _expect_lines(expected):
    """A check: stdout, split in lines, equals expected (a list of strings)."""

    def check(stdout):
        got = stdout.split("\n")
        if got == expected:
            return None
        for i, (g, e) in enumerate(zip(got, expected)):
            if g != e:
                return "line %d is %r, expected %r" % (i + 1, g[:80], e[:80])
        return "%d lines, expected %d" % (len(got), len(expected))

    return check


def _expect_last_line(prefix):
    def check(stdout):
        lines = stdout.split("\n")
        return None if lines and lines[-1].startswith(prefix) else "no %r line at the end" % prefix

    return check


# ------------------------------------------------------------------ lua

LUA_SCRIPT = r"""
-- bench/runner/inputs.py: allocation-heavy Lua (tables, strings, closures).
-- Every step checks its result; the last line is a checksum that does not
-- depend on table iteration order (Lua seeds its string hash per run).
local n = tonumber(arg[1])
local sum = 0
local function add(x) sum = (sum * 31 + x) % 2147483647 end

-- records in a table with string keys, then their names joined and split
local t = {}
for i = 1, n do
  t["k" .. i] = {id = i, name = string.rep("ab", i % 13) .. tostring(i), v = (i * 7919) % 1009}
end
local parts = {}
for i = 1, n do parts[#parts + 1] = string.format("%d:%s", i, t["k" .. i].name) end
local s = table.concat(parts, ",")
local count = 0
for w in s:gmatch("[^,]+") do
  count = count + 1
  local id = tonumber(w:match("^(%d+):"))
  assert(id == count, "split")
end
assert(count == n, "count")
add(#s)

-- sort the records by value (a total order)
local arr = {}
for _, r in pairs(t) do arr[#arr + 1] = r end
table.sort(arr, function(a, b) if a.v ~= b.v then return a.v < b.v end return a.id < b.id end)
for i = 2, #arr do assert(arr[i - 1].v <= arr[i].v, "sorted") end
for i = 1, #arr, 97 do add(arr[i].id) end

-- binary trees of small tables, built and walked
local function make(d) if d == 0 then return {} end return {make(d - 1), make(d - 1)} end
local function walk(tr) if tr[1] then return 1 + walk(tr[1]) + walk(tr[2]) end return 1 end
local rounds = math.max(1, n // 2000)
for r = 1, rounds do
  local tr = make(12)
  assert(walk(tr) == 8191, "tree")
  add(r)
end

-- word counts over generated text, with a string buffer that grows
local words = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
local counts = {}
local buf = {}
local lines = 0
local seed = 12345
for i = 1, n * 4 do
  seed = (seed * 1103515245 + 12345) % 2147483648
  local w = words[seed % #words + 1] .. (seed % 50)
  counts[w] = (counts[w] or 0) + 1
  buf[#buf + 1] = w
  if #buf == 64 then
    local line = table.concat(buf, " ")
    assert(#line >= 64 * 4, "line")
    lines = lines + 1
    buf = {}
  end
end
add(lines)
local keys = {}
for k in pairs(counts) do keys[#keys + 1] = k end
table.sort(keys)
local total = 0
for _, k in ipairs(keys) do total = total + counts[k]; add(counts[k]) end
assert(total == n * 4, "words")

-- closures that capture and rebuild strings
local fs = {}
for i = 1, n do local x = tostring(i); fs[i] = function(y) return x .. y end end
local acc = 0
for i = 1, n do acc = acc + #fs[i]("z") end
add(acc)
print(string.format("lua ok n=%d checksum=%d", n, sum))
"""


def lua(d, scale):
    n = max(2000, int(120000 * scale))
    script = _write(os.path.join(d, "workload.lua"), LUA_SCRIPT)
    return Task(["lua5.4", script, str(n)], _expect_last_line("lua ok n=%d " % n))


# ----------------------------------------------------------------- ruby

RUBY_SCRIPT = r"""
# bench/runner/inputs.py: allocation-heavy Ruby (objects, hashes, strings,
# arrays). Every step checks its result; the last line is a checksum.
n = Integer(ARGV[0])
sum = 0
add = ->(x) { sum = (sum * 31 + x) % 2147483647 }

Rec = Struct.new(:id, :name, :v)
h = {}
n.times { |i| h["k#{i}"] = Rec.new(i, "ab" * (i % 13) + i.to_s, (i * 7919) % 1009) }
s = h.each_value.map { |r| "#{r.id}:#{r.name}" }.join(",")
parts = s.split(",")
raise "split" unless parts.size == n
parts.each_with_index { |w, i| raise "id" unless w.to_i == i }
add.(s.size)

arr = h.values.sort_by { |r| [r.v, r.id] }
(1...arr.size).each { |i| raise "sorted" if arr[i - 1].v > arr[i].v }
(0...arr.size).step(97) { |i| add.(arr[i].id) }

class Node
  attr_reader :l, :r
  def initialize(l, r) = (@l = l; @r = r)
  def count = 1 + (l ? l.count + r.count : 0)
end
def make(d) = d.zero? ? Node.new(nil, nil) : Node.new(make(d - 1), make(d - 1))
[1, n / 4000].max.times do |r|
  raise "tree" unless make(12).count == 8191
  add.(r)
end

words = %w[alpha beta gamma delta epsilon zeta eta theta]
counts = Hash.new(0)
seed = 12345
buf = +""
(n * 2).times do
  seed = (seed * 1103515245 + 12345) % 2147483648
  w = "#{words[seed % words.size]}#{seed % 50}"
  counts[w] += 1
  buf << w << " "
  buf = +"" if buf.size > 4096
end
raise "words" unless counts.values.sum == n * 2
counts.keys.sort.each { |k| add.(counts[k]) }

js = Array.new(n / 10) { |i| {id: i, tags: ["t#{i % 7}", "u#{i % 11}"], score: i * 0.5} }
text = js.map { |o| o.map { |k, v| "#{k}=#{v.inspect}" }.join(";") }.join("\n")
raise "lines" unless text.lines.size == js.size
add.(text.size)
puts "ruby ok n=#{n} checksum=#{sum}"
"""


def ruby(d, scale):
    n = max(2000, int(150000 * scale))
    script = _write(os.path.join(d, "workload.rb"), RUBY_SCRIPT)
    return Task(["ruby", "--disable-gems", script, str(n)], _expect_last_line("ruby ok n=%d " % n))


# --------------------------------------------------------------- sqlite3

def sqlite(d, scale):
    """An SQL script for the sqlite3 shell on an in-memory database: inserts,
    indexes, joins, grouping, updates, deletes; the answers are computed here."""
    rng = random.Random(20261205)
    n_cust = max(100, int(20000 * scale))
    n_ord = max(500, int(200000 * scale))
    cities = ["city%02d" % i for i in range(40)]
    items = ["item-%03d-%s" % (i, "x" * (i % 23)) for i in range(300)]
    cust_city = [rng.choice(cities) for _ in range(n_cust)]
    orders = []
    for i in range(n_ord):
        orders.append((i + 1, rng.randrange(n_cust) + 1, rng.randrange(len(items)), rng.randrange(1, 100),
                       rng.randrange(100, 100000)))
    sql = ["CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);",
           "CREATE TABLE orders(id INTEGER PRIMARY KEY, cust INTEGER NOT NULL, item TEXT NOT NULL, "
           "qty INTEGER NOT NULL, cents INTEGER NOT NULL);", "BEGIN;"]
    for i in range(0, n_cust, 200):
        sql.append("INSERT INTO customers VALUES " + ",".join(
            "(%d,'customer number %d','%s')" % (j + 1, j + 1, cust_city[j]) for j in range(i, min(i + 200, n_cust)))
                   + ";")
    for i in range(0, n_ord, 200):
        sql.append("INSERT INTO orders VALUES " + ",".join(
            "(%d,%d,'%s',%d,%d)" % (o[0], o[1], items[o[2]], o[3], o[4]) for o in orders[i:i + 200]) + ";")
    sql += ["COMMIT;", "CREATE INDEX orders_cust ON orders(cust);", "CREATE INDEX orders_item ON orders(item, qty);",
            "CREATE INDEX customers_city ON customers(city);"]
    expected = []
    sql.append("SELECT count(*), sum(qty), sum(cents) FROM orders;")
    expected.append("%d|%d|%d" % (n_ord, sum(o[3] for o in orders), sum(o[4] for o in orders)))
    sql.append("SELECT c.city, count(*), sum(o.qty * o.cents) FROM orders o JOIN customers c ON c.id = o.cust "
               "GROUP BY c.city ORDER BY c.city;")
    per_city = {}
    for o in orders:
        c = cust_city[o[1] - 1]
        cnt, tot = per_city.get(c, (0, 0))
        per_city[c] = (cnt + 1, tot + o[3] * o[4])
    expected += ["%s|%d|%d" % (c, per_city[c][0], per_city[c][1]) for c in sorted(per_city)]
    sql.append("SELECT item, count(*), max(qty) FROM orders GROUP BY item ORDER BY count(*) DESC, item LIMIT 5;")
    per_item = {}
    for o in orders:
        cnt, mx = per_item.get(o[2], (0, 0))
        per_item[o[2]] = (cnt + 1, max(mx, o[3]))
    top = sorted(per_item.items(), key=lambda kv: (-kv[1][0], items[kv[0]]))[:5]
    expected += ["%s|%d|%d" % (items[k], v[0], v[1]) for k, v in top]
    sql.append("SELECT count(*) FROM (SELECT cust FROM orders GROUP BY cust HAVING sum(qty) > 500);")
    per_cust = {}
    for o in orders:
        per_cust[o[1]] = per_cust.get(o[1], 0) + o[3]
    expected.append("%d" % sum(1 for v in per_cust.values() if v > 500))
    sql.append("UPDATE orders SET qty = qty + 1 WHERE id % 7 = 0;")
    sql.append("DELETE FROM orders WHERE qty > 95;")
    left = [(o[0], o[1], o[2], o[3] + (1 if o[0] % 7 == 0 else 0), o[4]) for o in orders]
    left = [o for o in left if o[3] <= 95]
    sql.append("SELECT count(*), sum(qty) FROM orders;")
    expected.append("%d|%d" % (len(left), sum(o[3] for o in left)))
    # strings built and sorted by the database: a group_concat per city
    sql.append("SELECT city, length(group_concat(name, ';')) FROM (SELECT city, name FROM customers ORDER BY id) "
               "GROUP BY city ORDER BY city;")
    per_city_len = {}
    for j, c in enumerate(cust_city):
        per_city_len.setdefault(c, []).append(len("customer number %d" % (j + 1)))
    expected += ["%s|%d" % (c, sum(v) + len(v) - 1) for c, v in sorted(per_city_len.items())]
    path = _write(os.path.join(d, "workload.sql"), "\n".join(sql) + "\n")
    return Task(["sqlite3", "-batch", ":memory:", ".read " + path], _expect_lines(expected))


# -------------------------------------------------------------------- z3

def z3(d, scale):
    """SMT-LIB 2 problems: random 3-SAT over Booleans, each planted with a
    solution (sat), with an integer sum over a few of the variables tied to
    the planted count; every fourth problem also asserts the sum is larger
    (unsat). The answers are known here."""
    rng = random.Random(1337)
    problems = max(2, int(PROBLEMS * scale))
    out, expected = [], []
    for p in range(problems):
        sol = [rng.random() < 0.5 for _ in range(NVARS)]
        names = ["b%d_%d" % (p, i) for i in range(NVARS)]
        out.append("(set-logic QF_LIA)")
        out += ["(declare-fun %s () Bool)" % v for v in names]
        for _ in range(NCONS):
            while True:
                idx = rng.sample(range(NVARS), 3)
                neg = [rng.random() < 0.5 for _ in idx]
                if any(sol[i] != n for i, n in zip(idx, neg)):
                    break  # the planted assignment satisfies the clause
            out.append("(assert (or %s))" % " ".join(
                ("(not %s)" % names[i]) if n else names[i] for i, n in zip(idx, neg)))
        few = rng.sample(range(NVARS), 12)
        total = sum(1 for i in few if sol[i])
        s_expr = "(+ %s)" % " ".join("(ite %s 1 0)" % names[i] for i in few)
        out.append("(assert (= %s %d))" % (s_expr, total))
        unsat = p % 4 == 3
        if unsat:
            out.append("(assert (>= %s %d))" % (s_expr, total + 1))
        out.append("(check-sat)")
        out.append("(reset)")  # a fresh solver each time (after push/pop z3 4.8 is many times slower)
        expected.append("unsat" if unsat else "sat")
    path = _write(os.path.join(d, "workload.smt2"), "\n".join(out) + "\n")
    return Task(["z3", "-smt2", path], _expect_lines(expected))


# ----------------------------------------------------------- ghostscript

PS_PROGRAM = r"""%!PS
% bench/runner/inputs.py: PostScript that allocates (strings, arrays,
% dictionaries in VM) and draws (paths, curves, text) on PAGES pages.
/pages PAGES def
/seed 4242 def
/rnd { /seed seed 1103515245 mul 12345 add 2147483648 mod def seed 1000 mod } bind def
/total 0 def
1 1 pages {
  /pg exch def
  % allocation: a dictionary of string keys holding arrays of strings
  /d 600 dict def
  0 1 599 {
    /i exch def
    /k 16 string def
    i k cvs pop
    d k cvn [ 0 1 9 { pop rnd 20 string cvs } for ] put
  } for
  /total total d length add def
  % drawing: random filled polygons, curves and text
  0 1 250 {
    pop
    rnd 1000 div setgray
    newpath rnd 0.6 mul rnd 0.8 mul moveto
    3 { rnd 0.6 mul rnd 0.8 mul lineto } repeat
    closepath fill
    newpath rnd 0.6 mul rnd 0.8 mul moveto
    rnd 0.6 mul rnd 0.8 mul rnd 0.6 mul rnd 0.8 mul rnd 0.6 mul rnd 0.8 mul curveto
    0 setgray 0.7 setlinewidth stroke
  } for
  /Helvetica findfont 9 scalefont setfont
  0 1 60 {
    /j exch def
    20 760 j 12 mul sub moveto
    (page ) show pg 10 string cvs show ( line ) show j 10 string cvs show
    ( the quick brown fox jumps over the lazy dog ) show rnd 10 string cvs show
  } for
  /Times-Roman findfont 30 scalefont setfont 200 400 moveto pg 10 string cvs show
  showpage
} for
(gs ok dicts=) print total 20 string cvs print (\n) print flush
"""


def ghostscript(d, scale):
    pages = max(1, int(5 * scale))
    ps = _write(os.path.join(d, "workload.ps"), PS_PROGRAM.replace("PAGES", str(pages)))
    out = os.path.join(d, "out.pgm")
    return Task(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pgmraw", "-r100", "-dTextAlphaBits=4",
                 "-dGraphicsAlphaBits=4", "-sOutputFile=" + out, ps],
                _expect_lines(["gs ok dicts=%d" % (600 * pages)]), out)


# ------------------------------------------------------------------- g++

CXX_HEAD = r"""// bench/runner/inputs.py: a generated C++ translation unit for g++ -O1.
#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

template <int N> struct Shape {
  std::vector<double> xs;
  std::string name;
  double area() const { return std::accumulate(xs.begin(), xs.end(), 0.0) * N; }
};
"""

CXX_UNIT = r"""
namespace u{i} {{
struct Rec{i} {{
  int id;
  std::string label;
  std::map<std::string, int> tags;
  bool operator<(const Rec{i}& o) const {{ return id < o.id; }}
}};
template <typename T> T fold{i}(const std::vector<T>& v) {{
  T acc{{}};
  for (const auto& x : v) acc = acc + x * {k} - (x >> 1);
  return acc;
}}
std::vector<Rec{i}> make{i}(int n) {{
  std::vector<Rec{i}> out;
  for (int j = 0; j < n; ++j) {{
    Rec{i} r{{j * {k}, "r" + std::to_string(j), {{}}}};
    r.tags["k" + std::to_string(j % {m})] = j;
    out.push_back(std::move(r));
  }}
  std::sort(out.begin(), out.end());
  return out;
}}
int run{i}(int n) {{
  auto recs = make{i}(n);
  std::vector<int> ids;
  for (const auto& r : recs) ids.push_back(r.id + static_cast<int>(r.tags.size()));
  auto shape = std::make_unique<Shape<{m}>>();
  shape->xs.assign(ids.begin(), ids.end());
  auto f = [&](int x) {{ return x * {k} + static_cast<int>(shape->area()); }};
  return fold{i}(ids) + f(n) + static_cast<int>(recs.size());
}}
}}  // namespace u{i}
"""


def gxx(d, scale):
    units = max(2, int(8 * scale))
    body = [CXX_HEAD]
    for i in range(units):
        body.append(CXX_UNIT.format(i=i, k=(i * 7) % 13 + 1, m=i % 5 + 1))
    body.append("int run_all(int n) {\n  int s = 0;\n" +
                "".join("  s += u%d::run%d(n);\n" % (i, i) for i in range(units)) + "  return s;\n}\n")
    src = _write(os.path.join(d, "workload.cpp"), "".join(body))
    out = os.path.join(d, "out.s")

    def check(stdout):
        return None if stdout == "" else "unexpected output: %s" % stdout[:120]

    return Task(["g++", "-std=c++17", "-O1", "-S", "-frandom-seed=shardalloc", "-o", out, src], check, out)


GENERATORS = {"lua": lua, "ruby": ruby, "sqlite": sqlite, "z3": z3, "ghostscript": ghostscript, "gxx": gxx}
