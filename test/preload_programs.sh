#!/bin/bash
# preload_programs.sh — runs real programs with pallet as their malloc
# (LD_PRELOAD=libpallet.so) and compares what each prints with a run
# without the preload: python3 with a thread pool, git (init, commits, log,
# gc, fsck), gcc compiling and running a C program, g++ the same for a
# C++ program (containers, a failed new caught), a hash-heavy perl
# script, sort on a generated file, sqlite3 with 10k rows, node with
# worker threads, and redis-server under redis-benchmark.  With
# LD_DEBUG=bindings it also checks that malloc and free really bind to
# libpallet (sort and python3), and C++'s operators new and delete (node).
#
# A program that is not installed is reported as skipped, but fewer than
# 5 programs run is a failure (CI installs them all).
#
# The library: $LIBPALLET_SO (test/api.mk passes it), else .libs/libpallet.so
# under the current directory or next to this script's build directory.
# Exit status: 0 all passed, 1 something failed, 99 set-up error.

set -u

lib=${LIBPALLET_SO:-}
if [ -z "$lib" ]; then
  for cand in "$PWD/.libs/libpallet.so" "$(dirname "$0")/../.libs/libpallet.so"; do
    if [ -e "$cand" ]; then lib=$cand; break; fi
  done
fi
if [ -z "$lib" ] || [ ! -e "$lib" ]; then
  echo "preload_programs: libpallet.so not found (set LIBPALLET_SO)" >&2
  exit 99
fi
case $lib in /*) ;; *) lib="$PWD/$lib" ;; esac
# PALLET_* variables are pallet's options: do not hand this one down.
unset PALLET_LIB

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pallet-preload.XXXXXX") || exit 99
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ran=0 passed=0 failed=0 skipped=0
LIMIT=${PL_PRELOAD_TIMEOUT:-120}

have() { command -v "$1" >/dev/null 2>&1; }

# compare NAME: diffs $TMP/NAME.ref and $TMP/NAME.pl (and the exit codes)
report() {
  local name=$1 rc_ref=$2 rc_pl=$3
  ran=$((ran + 1))
  if [ "$rc_ref" -ne 0 ]; then
    echo "FAIL: $name: the run WITHOUT pallet failed (status $rc_ref); its stderr:"
    sed 's/^/  | /' "$TMP/$name.ref.err" | tail -20
    failed=$((failed + 1))
  elif [ "$rc_pl" -ne 0 ]; then
    echo "FAIL: $name: the run with LD_PRELOAD=$lib exited with status $rc_pl; its stderr:"
    sed 's/^/  | /' "$TMP/$name.pl.err" | tail -20
    failed=$((failed + 1))
  elif grep -q 'pallet: ' "$TMP/$name.pl.err"; then
    echo "FAIL: $name: pallet complained:"
    grep 'pallet: ' "$TMP/$name.pl.err" | head -10 | sed 's/^/  | /'
    failed=$((failed + 1))
  elif ! cmp -s "$TMP/$name.ref" "$TMP/$name.pl"; then
    echo "FAIL: $name: output differs with pallet:"
    diff "$TMP/$name.ref" "$TMP/$name.pl" | head -20 | sed 's/^/  | /'
    failed=$((failed + 1))
  elif [ ! -s "$TMP/$name.ref" ]; then
    echo "FAIL: $name: produced no output"
    failed=$((failed + 1))
  else
    echo "PASS: $name ($(wc -l < "$TMP/$name.ref") lines of output agree)"
    passed=$((passed + 1))
  fi
}

skip() {
  echo "SKIP: $1 (not installed: $2)"
  skipped=$((skipped + 1))
}

# run_both NAME FUNCTION: runs FUNCTION (which prints to stdout) in a
# fresh directory twice, once plain and once with pallet preloaded.
run_both() {
  local name=$1 fn=$2 rc_ref rc_pl
  mkdir -p "$TMP/$name-ref" "$TMP/$name-pl"
  (cd "$TMP/$name-ref" && PRELOAD= "$fn") > "$TMP/$name.ref" 2> "$TMP/$name.ref.err"
  rc_ref=$?
  (cd "$TMP/$name-pl" && PRELOAD=$lib "$fn") > "$TMP/$name.pl" 2> "$TMP/$name.pl.err"
  rc_pl=$?
  report "$name" "$rc_ref" "$rc_pl"
}

# with_lib CMD...: runs CMD with the preload of this round (if any), time-bounded
with_lib() {
  if [ -n "$PRELOAD" ]; then
    LD_PRELOAD=$PRELOAD timeout "$LIMIT" "$@"
  else
    timeout "$LIMIT" "$@"
  fi
}

# ---- python3: a thread pool doing allocation-heavy work ---------------
case_python() {
  cat > work.py <<'EOF'
import hashlib
from concurrent.futures import ThreadPoolExecutor

def job(k):
    d = {}
    for i in range(20000):
        key = "k%d-%d" % (k, i * 7919 % 20011)
        d[key] = [i, str(i) * (i % 13), bytes(i % 200)]
    lst = sorted(d.items(), key=lambda kv: kv[0])
    h = hashlib.sha256()
    for key, (i, s, b) in lst:
        h.update(key.encode()); h.update(s.encode()); h.update(b)
    big = [bytearray(1 << 16) for _ in range(64)]
    return k, h.hexdigest(), sum(len(x) for x in big)

with ThreadPoolExecutor(max_workers=8) as ex:
    for k, digest, n in ex.map(job, range(24)):
        print(k, digest, n)
EOF
  with_lib python3 work.py
}

# ---- git: init, commits, log, gc, fsck --------------------------------
case_git() {
  export HOME=$PWD GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
    GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
    GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
  with_lib git init -q -b main repo || return 1
  cd repo || return 1
  local i j
  for i in 1 2 3 4 5 6 7 8; do
    for j in $(seq 1 40); do
      printf 'file %s revision %s\n%0*d\n' "$j" "$i" $((j * i * 10)) 0 > "f$j.txt"
    done
    with_lib git add -A || return 1
    with_lib git commit -q -m "commit $i" || return 1
  done
  with_lib git log --format='%H %s' || return 1
  with_lib git gc -q || return 1
  with_lib git fsck --full --strict 2>&1 || return 1
  with_lib git count-objects -v | grep -v '^size' || return 1
  with_lib git rev-parse HEAD^{tree}
}

# ---- gcc: compile and run a small program -----------------------------
case_gcc() {
  cat > prog.c <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; char name[24]; };
int main(void) {
  struct node *head = NULL;
  unsigned long sum = 0;
  for (int i = 0; i < 100000; i++) {
    struct node *n = malloc(sizeof *n);
    snprintf(n->name, sizeof n->name, "node-%d", i);
    n->next = head; head = n;
  }
  while (head) { struct node *n = head; head = n->next; sum += strlen(n->name); free(n); }
  printf("sum %lu\n", sum);
  return 0;
}
EOF
  with_lib gcc -O2 -Wall -o prog prog.c || return 1
  with_lib ./prog
}

# ---- g++: compiling and running a C++ program (new and delete) --------
case_gxx() {
  cat > prog.cc <<'EOF'
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>
struct rec { std::string name; std::vector<int> v; };
int main() {
  std::map<int, std::unique_ptr<rec>> m;
  unsigned long sum = 0;
  for (int i = 0; i < 200000; i++) {
    auto r = std::make_unique<rec>();
    r->name = "record-" + std::to_string(i);
    r->v.assign(i % 50, i);
    m[i % 5000] = std::move(r);
  }
  for (auto &kv : m) sum += kv.second->name.size() + kv.second->v.size();
  bool thrown = false;
  try {
    void *p = ::operator new((std::size_t)1 << 62);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  std::printf("sum %lu bad_alloc %d\n", sum, thrown);
  return 0;
}
EOF
  with_lib g++ -O2 -Wall -o prog prog.cc || return 1
  with_lib ./prog
}

# ---- perl: a hash-heavy script ----------------------------------------
case_perl() {
  with_lib perl -e '
    my %h; my $x = 1;
    for my $i (1 .. 200000) {
      $x = ($x * 1103515245 + 12345) % 2147483648;
      $h{"key$x"} .= "v$i,";
      delete $h{"key" . ($x >> 3)} if $i % 5 == 0;
    }
    my $n = 0; my $len = 0;
    for my $k (sort keys %h) { $n++; $len += length($h{$k}) + length($k); }
    my @words = map { join("", reverse split //, $_) } (keys %h)[0 .. 999];
    print "keys $n total $len words ", scalar(@words), "\n";'
}

# ---- sort on a generated file -----------------------------------------
case_sort() {
  awk 'BEGIN { x = 12345; for (i = 0; i < 300000; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d line %d %s\n", x, i, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1) } }' > in.txt
  with_lib sort --parallel=2 -S 8M in.txt | cksum || return 1
  with_lib sort -n -k1,1 -k3,3 in.txt | cksum
}

# ---- sqlite3: 10k rows --------------------------------------------------
case_sqlite() {
  with_lib sqlite3 db.sqlite <<'EOF'
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, v REAL, blob BLOB);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 10000)
INSERT INTO t SELECT i, 'name-' || (i * 7919 % 10007), i * 0.5, zeroblob(i % 500) FROM c;
COMMIT;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(v), sum(length(blob)), count(DISTINCT name) FROM t;
SELECT name, count(*) FROM t GROUP BY substr(name, 1, 7) ORDER BY 1 LIMIT 5;
UPDATE t SET name = name || '-x' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
VACUUM;
SELECT count(*), max(name) FROM t;
PRAGMA integrity_check;
EOF
}

# ---- node: many objects, worker threads --------------------------------
case_node() {
  cat > work.js <<'EOF'
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const crypto = require('crypto');
function work(k) {
  const m = new Map();
  for (let i = 0; i < 100000; i++) m.set('k' + k + '-' + i, { i, s: 'x'.repeat(i % 50), a: [i, i * 2] });
  const h = crypto.createHash('sha256');
  for (const [key, v] of m) { h.update(key); h.update(v.s); }
  const bufs = []; for (let i = 0; i < 200; i++) bufs.push(Buffer.alloc(65536, i));
  return k + ' ' + h.digest('hex') + ' ' + bufs.reduce((a, b) => a + b.length, 0);
}
if (isMainThread) {
  const results = [];
  let left = 4;
  for (let k = 0; k < 4; k++) {
    const w = new Worker(__filename, { workerData: k });
    w.on('message', (r) => { results[k] = r; if (--left === 0) { console.log(results.join('\n')); console.log(work(99)); } });
    w.on('error', (e) => { console.error(e); process.exit(1); });
  }
} else {
  parentPort.postMessage(work(workerData));
}
EOF
  with_lib node work.js
}

# ---- redis-server under redis-benchmark --------------------------------
# The server listens on a random port below the kernel's ephemeral range
# (32768 and up by default, where the clients' own ends of connections,
# and those left in TIME_WAIT, could hold it: a port taken so once made
# this case fail).  If the port is taken all the same, the server exits,
# and the next port is tried; a server is ours when the directory it
# reports is this case's.
start_redis() {
  local try i
  for try in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 12000))
    if [ -n "$PRELOAD" ]; then
      LD_PRELOAD=$PRELOAD timeout "$LIMIT" redis-server --port "$port" --bind 127.0.0.1 \
        --save '' --appendonly no --dir "$PWD" --logfile "$PWD/redis.log" &
    else
      timeout "$LIMIT" redis-server --port "$port" --bind 127.0.0.1 \
        --save '' --appendonly no --dir "$PWD" --logfile "$PWD/redis.log" &
    fi
    redis_pid=$!
    for i in $(seq 1 100); do
      redis-cli -p "$port" config get dir 2>/dev/null | grep -qx "$(pwd -P)" && return 0
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=
  done
  return 1
}

case_redis() {
  local port i
  if ! start_redis; then
    echo "redis-server did not start on any of 8 ports" >&2
    cat redis.log >&2
    return 1
  fi
  if ! timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" -n 20000 -c 20 -q -P 4 \
         -t set,get,incr,lpush,rpop,sadd,hset,mset > bench.out 2>&1 ||
     ! grep -q 'requests per second' bench.out; then
    cat bench.out redis.log >&2
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid"
    return 1
  fi
  echo "benchmark: $(grep -c 'requests per second' bench.out) tests completed"
  {
    echo 'FLUSHALL'
    for i in $(seq 1 2000); do echo "SET key:$i $(printf '%0*d' $((i % 300)) "$i")"; done
    for i in $(seq 1 500); do echo "RPUSH list elem$i"; done
    echo 'DEL key:7 key:8 key:9'
    echo 'DBSIZE'
    echo 'LLEN list'
    echo 'STRLEN key:299'
    echo 'GET key:42'
    echo 'LRANGE list 100 104'
  } | redis-cli -p "$port" | grep -v '^OK$' | sort | uniq -c
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
  wait "$redis_pid"
  local rc=$?
  redis_pid=
  # a clean shutdown exits 0 (SIGTERM by timeout would be 124)
  return $rc
}

# ---- the programs --------------------------------------------------------
if have python3; then run_both python3 case_python; else skip python3 python3; fi
if have git; then run_both git case_git; else skip git git; fi
if have gcc; then run_both gcc case_gcc; else skip gcc gcc; fi
if have g++; then run_both g++ case_gxx; else skip g++ g++; fi
if have perl; then run_both perl case_perl; else skip perl perl; fi
if have sort && have awk && have cksum; then run_both sort case_sort; else skip sort "sort/awk"; fi
if have sqlite3; then run_both sqlite3 case_sqlite; else skip sqlite3 sqlite3; fi
if have node; then run_both node case_node; else skip node node; fi
if have redis-server && have redis-benchmark && have redis-cli; then
  run_both redis case_redis
else
  skip redis "redis-server/redis-tools"
fi

# ---- do malloc and free really bind to libpallet? -------------------------
# check_bindings NAME "SYMBOLS" COMMAND...: each symbol, as COMMAND and
# its libraries look it up, binds to libpallet, never to libc or libstdc++.
check_bindings() {
  local name=$1 syms=$2; shift 2
  local log="$TMP/bindings-$name.log" sym bad=0
  (cd "$TMP" && LD_DEBUG=bindings LD_DEBUG_OUTPUT="$log" LD_PRELOAD=$lib timeout "$LIMIT" "$@") > /dev/null 2>&1
  cat "$log".* > "$log" 2>/dev/null
  for sym in $syms; do
    if ! grep -q "to $lib.*symbol \`$sym'" "$log" &&
       ! grep -q "to $(dirname "$lib")/libpallet\.so[^ ]* .*symbol \`$sym'" "$log"; then
      echo "FAIL: bindings of $name: no binding of \`$sym' to libpallet"
      bad=1
    fi
    if grep -q "to [^ ]*lib\(c\|stdc++\)\.so\.6 .*normal symbol \`$sym'" "$log"; then
      echo "FAIL: bindings of $name: \`$sym' bound to libc or libstdc++:"
      grep "to [^ ]*lib\(c\|stdc++\)\.so\.6 .*normal symbol \`$sym'" "$log" | head -3 | sed 's/^/  | /'
      bad=1
    fi
  done
  ran=$((ran + 1))
  if [ $bad -eq 0 ]; then
    echo "PASS: bindings of $name ($syms bound to libpallet)"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
}
if have sort; then
  seq 1 1000 | sort -r > "$TMP/seq.txt"
  check_bindings sort "malloc free calloc realloc" sort -n "$TMP/seq.txt"
fi
if have python3; then
  check_bindings python3 "malloc free calloc realloc" \
    python3 -c 'import json; print(len(json.dumps([list(range(100))] * 100)))'
fi
if have node; then
  check_bindings node "_Znwm _Znam _ZdlPv malloc free" \
    node -e 'let a = []; for (let i = 0; i < 1000; i++) a.push({i}); console.log(a.length)'
fi

echo "preload_programs: $passed passed, $failed failed, $skipped skipped (library: $lib)"
if [ $failed -ne 0 ]; then exit 1; fi
if [ $ran -lt 5 ]; then
  echo "preload_programs: only $ran checks ran; at least 5 are required" >&2
  exit 1
fi
exit 0
