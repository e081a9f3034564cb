#!/bin/bash
# sqlite3 under LD_PRELOAD: 100,000 rows inserted in one transaction, then
# aggregates, an index, updates / deletes, VACUUM and integrity_check, every
# answer known in advance.
set -u
HERE=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh" || { echo "FAIL: cannot load $HERE/common.sh"; exit 1; }
need sqlite3 awk
make_scratch sqlite3

awk 'BEGIN {
  print "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);"
  print "BEGIN;"
  for (i = 1; i <= 100000; i++) printf "INSERT INTO t VALUES(%d, %d, %cname-%d%c, %d.5);\n", i, i % 10, 39, i, 39, i
  print "COMMIT;"
}' >"$SCRATCH/load.sql"

db="$SCRATCH/test.db"
SQL() { LD_PRELOAD="$SHARDALLOC_LIB" timeout 60 sqlite3 -batch -bail "$db" "$@"; }
expect() {  # expect "SQL" "answer"
  got=$(SQL "$1" 2>&1)
  [ "$got" = "$2" ] || fail "$1 -> '$got', expected '$2'"
}

SQL <"$SCRATCH/load.sql" || fail "loading 100k rows"
# The .shell child's parent is sqlite3: sqlite3 has shardalloc mapped.
# shellcheck disable=SC2016 # $PPID is for the .shell command's shell
mapped=$(SQL '.shell grep -c libshardalloc /proc/$PPID/maps')
[ "${mapped:-0}" -gt 0 ] 2>/dev/null || fail "sqlite3 does not run with libshardalloc.so mapped ($mapped)"

expect "SELECT count(*), sum(id), min(id), max(id), sum(grp) FROM t;" "100000|5000050000|1|100000|450000"
expect "SELECT sum(val) FROM t;" "5000100000.0"
expect "SELECT group_concat(grp || ':' || c, ',') FROM (SELECT grp, count(*) AS c FROM t GROUP BY grp ORDER BY grp);" \
  "0:10000,1:10000,2:10000,3:10000,4:10000,5:10000,6:10000,7:10000,8:10000,9:10000"
expect "SELECT count(*) FROM t WHERE name LIKE 'name-99%';" "1111"
expect "SELECT name FROM t ORDER BY name DESC LIMIT 1;" "name-99999"
expect "SELECT sum(length(name)) FROM t;" "988895"
expect "CREATE INDEX t_name ON t(name); SELECT id FROM t WHERE name = 'name-77777';" "77777"
expect "SELECT count(*) FROM t a JOIN t b ON a.id = b.id + 1 WHERE a.grp = 0;" "10000"
expect "UPDATE t SET name = name || '-x' WHERE grp = 1; SELECT count(*) FROM t WHERE name LIKE '%-x';" "10000"
expect "DELETE FROM t WHERE grp = 3; SELECT count(*), sum(grp) FROM t;" "90000|420000"
expect "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) SELECT sum(x), count(DISTINCT x % 1000) FROM c;" \
  "1250025000|1000"
expect "VACUUM; PRAGMA integrity_check;" "ok"
echo "PASS: sqlite3 (100k-row transaction, aggregates, index, join, update, delete, vacuum) under shardalloc"
