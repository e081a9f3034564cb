"""shardalloc's benchmark runner, the modules behind bench/run.

  workloads  what the suite runs (definitions)
  deps       the dependency step: peers, gnuplot, bench-only Debian packages
  build      the cmake build with its fallbacks
  launch     one process through bench-launch (time, peak RSS, failure reason)
  programs   real programs (empty program, Python, redis, Debian programs)
  inputs     the generated inputs of the Debian programs
  execute    jobs, repetitions, interleaving, medians
  icount     instruction counts under callgrind
  micro      Google Benchmark micro-benchmarks
  report     Markdown tables, CSV, JSON, gnuplot chart
  cli        the command line and the steps in order

Only the Python standard library is used.
"""
