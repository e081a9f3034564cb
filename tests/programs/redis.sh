#!/bin/bash
# redis-server under LD_PRELOAD on 127.0.0.1 and a random high port, answering
# redis-benchmark (also preloaded) for SET / GET / LPUSH / LRANGE, plus
# redis-cli SET / GET checks. The server's life is bounded: `timeout`, a
# SHUTDOWN at the end, and a kill from the exit trap whatever happens.
set -u
HERE=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh" || { echo "FAIL: cannot load $HERE/common.sh"; exit 1; }
need redis-server redis-cli redis-benchmark timeout
make_scratch redis

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    sleep 0.5
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  return 0
}
CLEANUP_HOOK=stop_server

CLI() { LD_PRELOAD="$SHARDALLOC_LIB" timeout 20 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# Start on a random port in 20000-59999; try another if it is taken.
started=""
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
  : >"$SCRATCH/redis.log"
  LD_PRELOAD="$SHARDALLOC_LIB" timeout -s KILL 150 redis-server --bind 127.0.0.1 --port "$PORT" \
    --protected-mode yes --save "" --appendonly no --dir "$SCRATCH" --daemonize no \
    --logfile "$SCRATCH/redis.log" --loglevel notice &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if [ "$(CLI ping 2>/dev/null)" = PONG ]; then
      # Ours, not some other server on that port: its parent is our `timeout`.
      pid=$(CLI info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
      ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
      [ "$ppid" = "$SERVER_PID" ] && started=1
      break
    fi
    sleep 0.1
  done
  [ -n "$started" ] && break
  stop_server
  wait "$SERVER_PID" 2>/dev/null
  echo "redis-server did not start on port $PORT (attempt $attempt):"
  tail -5 "$SCRATCH/redis.log"
done
[ -n "$started" ] || fail "redis-server did not start"

check_mapped "$pid"
echo "redis-server pid $pid on 127.0.0.1:$PORT runs with libshardalloc.so"

# redis-cli SET / GET, a 1 MiB value, a list.
[ "$(CLI set shardalloc:key hello-world)" = OK ] || fail "SET"
[ "$(CLI get shardalloc:key)" = hello-world ] || fail "GET"
head -c 1048576 /dev/zero | tr '\0' 'v' >"$SCRATCH/big"
[ "$(CLI -x set shardalloc:big <"$SCRATCH/big")" = OK ] || fail "SET of a 1 MiB value"
[ "$(CLI strlen shardalloc:big)" = 1048576 ] || fail "STRLEN of the 1 MiB value"
CLI rpush shardalloc:list $(seq 1 1000) >/dev/null || fail "RPUSH"
[ "$(CLI llen shardalloc:list)" = 1000 ] || fail "LLEN"
[ "$(CLI lrange shardalloc:list 0 -1 | awk '{s += $1} END {print s}')" = 500500 ] || fail "LRANGE sum"

out=$(LD_PRELOAD="$SHARDALLOC_LIB" timeout 100 redis-benchmark -h 127.0.0.1 -p "$PORT" -q -n 20000 \
  -t set,get,lpush,lrange 2>&1 | tr '\r' '\n' | grep 'requests per second')
rc=${PIPESTATUS[0]}
echo "$out"
[ "$rc" -eq 0 ] || fail "redis-benchmark exited with status $rc"
for t in SET GET LPUSH LRANGE_100 LRANGE_300 LRANGE_500 LRANGE_600; do
  echo "$out" | grep -q "^$t.*requests per second" || fail "redis-benchmark printed no result for $t"
done

# The data is still right after the benchmark, and the server is alive.
[ "$(CLI get shardalloc:key)" = hello-world ] || fail "GET after the benchmark"
[ "$(CLI strlen shardalloc:big)" = 1048576 ] || fail "STRLEN after the benchmark"
[ "$(CLI llen mylist)" -gt 0 ] 2>/dev/null || fail "the benchmark's list is missing"
CLI flushall >/dev/null || fail "FLUSHALL"
[ "$(CLI dbsize)" = 0 ] || fail "DBSIZE after FLUSHALL"

CLI shutdown nosave >/dev/null 2>&1
wait "$SERVER_PID"
status=$?
SERVER_PID=""
[ "$status" -eq 0 ] || { tail -20 "$SCRATCH/redis.log"; fail "redis-server exited with status $status"; }
grep -q -e "shardalloc:" -e "crashed" "$SCRATCH/redis.log" && { tail -30 "$SCRATCH/redis.log"; fail "redis-server log reports a crash"; }
echo "PASS: redis-server + redis-benchmark + redis-cli under shardalloc"
