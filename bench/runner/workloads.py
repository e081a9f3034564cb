"""What the suite runs: the workloads, the region workloads, the real
programs, the allocators and the peers' Debian packages (definitions only)."""


# name -> (quick scale, full scale, one-line description)
# Scales are chosen so that a glibc run at 1 thread takes ~0.05-0.1 s in
# quick mode (390 runs in ~40 s on 2 cores) and ~1-2 s in full mode.
WORKLOADS = [
    ("larson", 0.065, 1.0, "server simulation, objects handed to successor threads"),
    ("xmalloc-test", 0.035, 1.0, "T producers allocate 64 B objects, T consumers free them"),
    ("cache-scratch", 0.06, 1.0, "passive false sharing after a remote free"),
    ("cache-thrash", 0.06, 1.0, "active false sharing between threads' own objects"),
    ("mstress", 0.06, 1.0, "threads re-created each round, objects moved between threads"),
    ("rptest", 0.045, 1.0, "sizes 8..16000 B, cross-thread frees every 2 iterations"),
    ("alloc-test", 0.03, 1.0, "Pareto sizes up to 1 KiB, random alloc/free"),
    ("glibc-simple", 0.07, 1.0, "batches of 16-64 B blocks freed FIFO then LIFO"),
    ("glibc-thread", 0.045, 1.0, "1024-block working sets, inverse-square sizes 4 B..32 KiB"),
    ("malloc-large", 0.1, 1.0, "replace one of 20 live 5-25 MiB buffers"),
    ("mleak", 0.05, 1.0, "short-lived threads allocate, leave one object and exit"),
    ("sh6bench", 0.045, 1.0, "batches freed LIFO, FIFO and interleaved"),
    ("sh8bench", 0.045, 1.0, "batches freed LIFO, half of them by another thread"),
    ("thread-churn", 0.05, 1.0, "short-lived threads in sequence; a long-lived thread frees their blocks after they exit"),
    ("pipeline", 0.06, 1.0, "producer/consumer, one message at a time through a bounded ring; every free remote"),
    ("mixed-sizes", 0.03, 1.0, "batches of log-uniform 16 B..128 KiB blocks freed reverse, in order or shuffled"),
    ("wide-threads", 0.1, 0.5, "16*T threads at once, each replacing blocks of 16 B..1 MiB in a ring of 8"),
]
WORKLOAD_NAMES = [w[0] for w in WORKLOADS]

# The ArceOS allocator tests over one 512 MiB region: bench-region VARIANT SUB
# [threads] [scale]. name -> (SUB, quick scale, full scale, multi-threaded?, description)
REGION_WORKLOADS = [
    ("region-basic", "basic", 0.25, 1.0, False, "ArceOS basic: growing vector, sorted vectors, sorted map, fragmentation"),
    ("region-align", "align", 2.0, 10.0, False, "ArceOS align: sizes 1 B..64 KiB, alignments 1..128 (10 rounds in full)"),
    ("region-glibc_bench", "glibc_bench", 0.05, 1.0, False, "ArceOS glibc_bench: bench-malloc-simple over the region"),
    ("region-multi_thread", "multi_thread", 0.3, 3.0, True,
     "ArceOS multi_thread: 10 lanes, fresh threads every phase, mostly remote frees (300 turns in full)"),
]
REGION_NAMES = [w[0] for w in REGION_WORKLOADS]
REGION_THREADS = [1, 2]
# allocator column -> bench-region variant
REGION_ALLOCATORS = {
    "shardalloc-region": "shardalloc",
    "shardalloc-region-mutex": "shardalloc-mutex",
    "mimalloc-region": "mimalloc",
}
REGION_ORDER = list(REGION_ALLOCATORS)

# Real programs. name -> (quick scale or None = not in quick mode, full scale, description)
PROGRAM_WORKLOADS = [
    ("python-malloc", 0.05, 1.0, "bench/py_workload.py with PYTHONMALLOC=malloc: every object from the allocator"),
    ("python", None, 1.0, "bench/py_workload.py with CPython's default pymalloc (only blocks > 512 B from the allocator)"),
    ("redis", None, 1.0, "redis-server under the allocator, redis-benchmark -q -n 100000 -t set,get,lpush,lrange_100 -P 16"),
    ("startup", 1.0, 1.0, "/bin/true under the allocator: what preloading it costs an empty program (peak RSS, start-up)"),
]
# Debian programs run preloaded on fixed inputs that bench/runner/inputs.py
# generates (same scale, same bytes). Bench-only: the runner installs their
# packages when a selected row needs them. Every run's output (stdout and the
# file it writes) must equal an untimed reference run's (glibc, no preload)
# and pass the generator's own check, else the run fails.
# name -> (quick scale or None, full scale, Debian packages, executable, description)
DEBIAN_PROGRAMS = [
    ("lua", 0.1, 1.0, ["lua5.4"], "lua5.4",
     "lua5.4 on a generated script: records in string-keyed tables, string joins and splits, sort, "
     "binary trees of tables, word counts, closures"),
    ("sqlite", 0.1, 1.0, ["sqlite3"], "sqlite3",
     "the sqlite3 shell on a generated SQL script over :memory:: bulk inserts, 3 indexes, joins, "
     "GROUP BY, UPDATE, DELETE, group_concat"),
    ("ruby", None, 1.0, ["ruby"], "ruby",
     "ruby on a generated script: Structs in a Hash, string joins and splits, sort_by, object trees, "
     "word counts, hashes printed to text"),
    ("z3", None, 1.0, ["z3"], "z3",
     "z3 on a generated SMT-LIB 2 file: 24 planted random 3-SAT problems (250 variables, 1000 clauses) "
     "with an integer sum over 12 of them; 18 sat, 6 unsat"),
    ("ghostscript", None, 1.0, ["ghostscript"], "gs",
     "gs -sDEVICE=pgmraw -r100 on a generated PostScript file: 5 pages of dictionaries, strings, "
     "filled polygons, curves and text"),
    ("gxx", None, 1.0, ["g++"], "g++",
     "g++ -std=c++17 -O1 -S of a generated C++ file (8 units of templates, std::map/vector/string, "
     "lambdas); cc1plus is the process that allocates"),
]
DEBIAN_NAMES = [w[0] for w in DEBIAN_PROGRAMS]
PROGRAM_WORKLOADS += [(name, qs, fs, desc) for name, qs, fs, _, _, desc in DEBIAN_PROGRAMS]
PROGRAM_NAMES = [w[0] for w in PROGRAM_WORKLOADS]
REDIS_TESTS = ["set", "get", "lpush", "lrange_100"]
REDIS_REQUESTS = 100000
REDIS_PACKAGES = ["redis-server", "redis-tools"]
# startup: launches of /bin/true per run; the run reports their medians (one
# launch takes ~1 ms, too short to time alone on a busy machine).
STARTUP_LAUNCHES = 21

ALLOCATOR_ORDER = ["glibc", "shardalloc", "shardalloc-checked", "mimalloc", "jemalloc", "tcmalloc"]
# Run only when named in --allocators: shardalloc in checked mode
# (libshardalloc-checked.so; docs/reliability.md), to measure what the checks cost.
OPT_IN_ALLOCATORS = {"shardalloc-checked"}
ALL_ALLOCATORS = ALLOCATOR_ORDER + REGION_ORDER
ALL_WORKLOADS = WORKLOAD_NAMES + REGION_NAMES + PROGRAM_NAMES
# peer -> (shared object, Debian package that provides it)
PEERS = {
    "mimalloc": ("libmimalloc.so.2", "libmimalloc-dev"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc-dev"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
}
GNUPLOT_PACKAGE = "gnuplot-nox"
VALGRIND_PACKAGE = "valgrind"

# bench-icount under callgrind: measured function -> column title
ICOUNT_N = 200000
ICOUNT_SIZE = 32
ICOUNT_COLUMNS = [
    ("measure_pair", "malloc+free pair (hot)"),
    ("measure_batch_malloc", "malloc (batch of N)"),
    ("measure_local_free", "free, local (batch)"),
    ("measure_remote_free", "free, remote (batch)"),
]
