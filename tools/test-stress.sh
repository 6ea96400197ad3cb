#!/bin/sh
# test-stress.sh — make check test of the stress harness (tools/).
# Shows that pallet-stress catches what it must (a flipped byte, a hang,
# a fork child that crashes or hangs, bad options) and that short clean
# runs pass: pallet-stress with libpallet.so preloaded, pallet-stress-api,
# and pallet-stress on the system malloc.  Paths come from the environment
# (tools/local.mk sets them); run from the top build directory otherwise.
# Sanitizer builds skip the LD_PRELOAD parts (a sanitizer must come first).

: "${STRESS_BIN:=./tools/pallet-stress}"
: "${STRESS_API_BIN:=./tools/pallet-stress-api}"
: "${STRESS_SHIM:=./tools/.libs/corrupt-shim.so}"
: "${LIBPALLET_SO:=./.libs/libpallet.so}"
: "${STRESS_SANITIZED:=no}"
: "${STRESS_OVERRIDE:=yes}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-stress.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0

# A run never takes more than this many seconds, whatever goes wrong.
limit() {
  if command -v timeout >/dev/null 2>&1; then timeout -s KILL 300 "$@"
  else "$@"; fi
}

ok() { passes=$((passes + 1)); echo "ok: $*"; }
bad() {
  failures=$((failures + 1))
  echo "FAIL: $*"
  echo "--- stderr:"; tail -n 20 "$tmp/err"
  echo "--- stdout:"; tail -n 5 "$tmp/out"
}

# run DESCRIPTION EXPECTED-STATUS [VAR=VALUE...] -- COMMAND...
run() {
  desc=$1 want=$2
  shift 2
  env_args=
  while [ "$1" != "--" ]; do env_args="$env_args $1"; shift; done
  shift
  # shellcheck disable=SC2086
  limit env $env_args "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" -eq "$want" ]; then ok "$desc (exit $got)"; return 0; fi
  bad "$desc: exit status $got, expected $want"
  return 1
}

# expect FILE PATTERN DESCRIPTION: FILE must contain the extended regexp.
expect() {
  if grep -Eq "$2" "$1"; then ok "$3"; else bad "$3: no /$2/ in $1"; fi
}

for f in "$STRESS_BIN" "$STRESS_API_BIN"; do
  if [ ! -x "$f" ]; then echo "FAIL: $f is not built"; exit 1; fi
done

# --- the command line -----------------------------------------------------
run "--help" 0 -- "$STRESS_BIN" --help &&
  expect "$tmp/out" '[-][-]fork-every' "--help lists --fork-every"
for args in "--threads 0" "--threads x" "--sizes huge" "--cross 101" \
            "--realloc -1" "--align" "--duration soon" "--min-align 24" \
            "--bogus" "stray"; do
  # shellcheck disable=SC2086
  if run "bad usage: $args" 2 -- "$STRESS_BIN" $args; then
    if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q 'pallet-stress: ' "$tmp/err"
    then ok "one-line error for $args"
    else bad "error for $args is not one line"; fi
  fi
done

# --- the harness notices a broken allocator --------------------------------
if [ "$STRESS_SANITIZED" = yes ]; then
  echo "skip: corrupting shim (sanitizer build: no LD_PRELOAD)"
elif [ ! -f "$STRESS_SHIM" ]; then
  bad "corrupting shim $STRESS_SHIM is not built"
else
  if run "flipped byte is reported" 1 LD_PRELOAD="$STRESS_SHIM" \
      CORRUPT_SHIM_EVERY=3000 -- \
      "$STRESS_BIN" --threads 2 --duration 60 --quiet --json; then
    expect "$tmp/err" 'corrupt-shim: flipped byte' "the shim flipped a byte"
    # The shim may flip several blocks before the harness frees (and so
    # checks) one of them: the report must name one of the flips exactly.
    rep=$(sed -n 's/.*FAILED: corrupted block \(0x[0-9a-f]*\) .*offset \([0-9]*\) expected.*/\1 \2/p' "$tmp/err" | head -n 1)
    if [ -n "$rep" ] && sed -n 's/^corrupt-shim: flipped byte at offset \([0-9]*\) of block \(0x[0-9a-f]*\).*/\2 \1/p' "$tmp/err" | grep -qx "$rep"; then
      ok "report names a flipped block and its offset ($rep)"
    else
      bad "report ($rep) names no block and offset the shim flipped"
    fi
    expect "$tmp/err" '^  expected at \+[0-9]+:' "report shows expected bytes"
    expect "$tmp/err" '^  found    at \+[0-9]+:' "report shows found bytes"
    expect "$tmp/out" '"result":"fail"' "--json says fail"
  fi
  if run "flip in a calloc-heavy small run is reported" 1 \
      LD_PRELOAD="$STRESS_SHIM" CORRUPT_SHIM_EVERY=2000 -- \
      "$STRESS_BIN" --threads 1 --sizes small --duration 60 --quiet; then
    expect "$tmp/err" 'FAILED.*corrupted block' "small-size corruption found"
  fi
  if run "hang is caught by the watchdog" 1 LD_PRELOAD="$STRESS_SHIM" \
      CORRUPT_SHIM_MODE=hang -- \
      "$STRESS_BIN" --threads 3 --duration 60 --watchdog 2 --quiet; then
    expect "$tmp/err" 'FAILED: watchdog: no progress' "watchdog report"
    expect "$tmp/err" 'thread [0-9]+ \(generation [0-9]+\) stuck for [0-9]+ s in (malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|valloc)' \
      "watchdog names the stuck thread and call"
  fi
  if run "crashing fork child is reported" 1 LD_PRELOAD="$STRESS_SHIM" \
      CORRUPT_SHIM_MODE=child-abort -- \
      "$STRESS_BIN" --threads 2 --duration 60 --fork-every 5000 --quiet; then
    expect "$tmp/err" 'FAILED in fork child \(pid [0-9]+\): signal 6' \
      "the child reports its crash"
    expect "$tmp/err" 'FAILED: fork child [0-9]+ \(forked by thread [0-9]+\) (exited with status 1|was killed by signal 6)' \
      "the parent reports the child's failure"
  fi
  if run "hanging fork child is reported" 1 LD_PRELOAD="$STRESS_SHIM" \
      CORRUPT_SHIM_MODE=child-hang -- \
      "$STRESS_BIN" --threads 2 --duration 60 --fork-every 5000 \
      --fork-timeout 1 --quiet; then
    expect "$tmp/err" 'fork child [0-9]+ .*hung' "child hang report"
  fi
  run "the shim in mode off passes" 0 LD_PRELOAD="$STRESS_SHIM" \
    CORRUPT_SHIM_MODE=off -- "$STRESS_BIN" --threads 2 --duration 1 --quiet
fi

# --- clean runs ------------------------------------------------------------
dur=2
[ "$STRESS_SANITIZED" = yes ] && dur=4
json_ok() {
  if command -v python3 >/dev/null 2>&1; then
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["result"]=="pass" and d["errors"]==0 and d["total_ops"]>0 else 1)' "$1"
    then ok "$2: JSON parses and says pass"; else bad "$2: bad JSON"; fi
  else
    expect "$1" '^\{.*"result":"pass"\}$' "$2: JSON says pass"
  fi
}

run "system malloc, 4 threads" 0 -- \
  "$STRESS_BIN" --threads 4 --duration 1 --json --quiet &&
  json_ok "$tmp/out" "system malloc"

if [ "$STRESS_SANITIZED" = yes ]; then
  echo "skip: LD_PRELOAD of libpallet.so (sanitizer build)"
elif [ "$STRESS_OVERRIDE" != yes ]; then
  echo "skip: LD_PRELOAD of libpallet.so (built with --disable-override)"
elif [ ! -f "$LIBPALLET_SO" ]; then
  echo "skip: no $LIBPALLET_SO (static-only build)"
else
  if run "pallet preloaded, fork + churn" 0 LD_PRELOAD="$LIBPALLET_SO" -- \
      "$STRESS_BIN" --threads 4 --duration $dur --fork-every 20000 --churn \
      --min-align 16 --json --quiet; then
    json_ok "$tmp/out" "pallet preloaded"
    expect "$tmp/out" '"heap_check":"passed"' "pallet was really preloaded"
  fi
  run "pallet preloaded, server-like sizes" 0 LD_PRELOAD="$LIBPALLET_SO" -- \
    "$STRESS_BIN" --threads 4 --duration 1 --sizes server-like --cross 40 \
    --min-align 16 --quiet
fi

if run "pallet API, fork + churn" 0 -- \
    "$STRESS_API_BIN" --threads 4 --duration $dur --fork-every 20000 \
    --churn --min-align 16 --json --quiet; then
  json_ok "$tmp/out" "pallet API"
  expect "$tmp/out" '"heap_check":"passed"' "pallet_heap_check ran"
fi
run "pallet API, large sizes, ops limit" 0 -- \
  "$STRESS_API_BIN" --threads 2 --ops 20000 --duration 60 --sizes large \
  --min-align 16 --quiet

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
