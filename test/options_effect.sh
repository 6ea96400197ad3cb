#!/bin/bash
# options_effect.sh — each PALLET_* option has its effect, bad values are
# reported once and ignored.  Runs test/options_effect_prog (built from
# test/options_effect.c, plain malloc calls) with LD_PRELOAD=libpallet.so
# and the options set, and checks what it prints and how it ends:
#   PALLET_STATS=1            the report at exit on stderr, every field named
#   PALLET_CANARY=1           a one-byte overflow aborts ("heap buffer
#                             overflow 0x"); without it, no abort; so does
#                             one of any value but the pad's (0xa5), past
#                             blocks of 1 B to 5 MiB (a child each)
#                             a large block freed twice around a small
#                             malloc aborts ("double free 0x"), with
#                             either option and without; a small one
#                             freed twice around a malloc of its size,
#                             with PALLET_CANARY=1 (its quarantine); and
#                             freed again after a write wiped its key;
#                             that write is reported when the block
#                             leaves the quarantine (malloc_trim, or
#                             5000 frees later); with PALLET_JUNK=1 too,
#                             a write at any byte
#   PALLET_JUNK=1             a write after free aborts on reuse ("write
#                             after free 0x"), at bytes 0, 8, 40 and 63 of
#                             the block; without it, no abort
#   PALLET_TCACHE_MAX=64k     the thread cache stays near 64 KiB (default:
#                             far more, for the same program)
#   PALLET_TCACHE_TOTAL=4m    17 threads' caches share 4 MiB: each keeps
#                             near its 512 KiB floor (with 0, no shared
#                             budget: far more)
#   PALLET_DECAY_MS=0         freed memory goes back within 0.5 s of light
#                             activity (with a 10 min decay: it does not)
#   PALLET_DIRTY_MAX=0        the same, through the dirty-memory limit
#   PALLET_RETAIN_CHUNKS=0    trim keeps no wholly free chunk mapped
#   PALLET_PURGE=free         accepted; memory purged that way reads right
#   PALLET_HEAPS=3            three span heaps in the settings line of
#                             PALLET_VERBOSE=1 (default: one per CPU,
#                             as nproc counts them, at most 16)
#   PALLET_FOO, bad values    exactly one warning line naming the variable,
#                             and the program works
# The library: $LIBPALLET_SO; the program: $PL_OPTIONS_PROG (both passed by
# AM_TESTS_ENVIRONMENT), else found under the current directory.
# Exit status: 0 passed, 1 failed, 99 set-up error.

set -u

lib=${LIBPALLET_SO:-$PWD/.libs/libpallet.so}
prog=${PL_OPTIONS_PROG:-$PWD/test/options_effect_prog}
if [ ! -e "$lib" ]; then echo "options_effect: $lib not found (set LIBPALLET_SO)" >&2; exit 99; fi
if [ ! -x "$prog" ]; then echo "options_effect: $prog not found (set PL_OPTIONS_PROG)" >&2; exit 99; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pallet-options.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# Every PALLET_* variable of our own environment is removed from the
# program's: only the options a check sets are seen.
unset_args=()
for v in $(env | sed -n 's/^\(PALLET_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset_args+=(-u "$v")
done

failed=0 checks=0
fail() {
  echo "FAIL: $*"
  echo "  stdout:"; sed 's/^/  | /' "$TMP/out" | head -20
  echo "  stderr:"; sed 's/^/  | /' "$TMP/err" | head -20
  failed=$((failed + 1))
}
pass() { echo "ok: $*"; }

# run VAR=value... -- MODE [ARG]: runs the program; sets $rc.
run() {
  local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done
  shift
  checks=$((checks + 1))
  # LD_PRELOAD only for the program itself (not for timeout or env, where
  # pallet would warn a second time).
  # The braces catch bash's own "Aborted" notice of the death tests.
  { timeout 60 env "${unset_args[@]}" "${vars[@]}" LD_PRELOAD="$lib" \
      "$prog" "$@" >"$TMP/out" 2>"$TMP/err"; } 2>/dev/null
  rc=$?
}

value() { sed -n "s/^$1=//p" "$TMP/out"; }

# The program ran to its end and pallet said nothing.
expect_clean() {
  local what=$1
  if [ "$rc" -ne 0 ] || ! grep -qx ok "$TMP/out"; then
    fail "$what: expected a clean run, status $rc"
  elif grep -q 'pallet' "$TMP/err"; then
    fail "$what: pallet wrote to stderr"
  else
    pass "$what"
  fi
}

# Exactly one line on stderr, a warning naming $2; the program worked.
expect_one_warning() {
  local what=$1 name=$2 lines
  lines=$(wc -l <"$TMP/err")
  if [ "$rc" -ne 0 ] || ! grep -qx ok "$TMP/out"; then
    fail "$what: the program did not work (status $rc)"
  elif [ "$lines" -ne 1 ]; then
    fail "$what: expected exactly one line on stderr, got $lines"
  elif ! grep -q "^pallet: warning: .*$name" "$TMP/err"; then
    fail "$what: the line is not a pallet warning naming $name"
  else
    pass "$what"
  fi
}

# Died of SIGABRT after a pallet message containing $2.
expect_abort() {
  local what=$1 msg=$2
  if [ "$rc" -ne 134 ]; then
    fail "$what: expected SIGABRT (status 134), got status $rc"
  elif ! grep -q "^pallet: .*$msg" "$TMP/err"; then
    fail "$what: no \"pallet: ...$msg\" on stderr"
  else
    pass "$what"
  fi
}

# The pallet line on stderr is exactly "pallet: FUNC(): WHAT <address>"
# for the address the program announced (a "target=0x... " line).
expect_report_on_target() {
  local what=$1 report=$2 target
  target=$(sed -n 's/^target=\(0x[0-9a-f]*\).*/\1/p' "$TMP/err")
  if [ -z "$target" ] || ! grep -q "^pallet: $report $target\$" "$TMP/err"; then
    fail "$what: no \"pallet: $report ${target:-<no target>}\" line"
  fi
}

MIB=$((1 << 20))

# ---- the program works at all ------------------------------------------
run -- work
expect_clean "no options: the program works"

# ---- PALLET_STATS ----------------------------------------------------------
run PALLET_STATS=1 -- work
if [ "$rc" -ne 0 ]; then
  fail "PALLET_STATS=1: status $rc"
else
  missing=
  for f in 'pallet statistics' allocated active resident mapped metadata tcache \
           central free_spans purged large huge chunks threads class spans blocks live cached; do
    grep -q "$f" "$TMP/err" || missing="$missing $f"
  done
  if [ -n "$missing" ]; then fail "PALLET_STATS=1: the report at exit lacks:$missing"
  elif grep -q 'warning' "$TMP/err"; then fail "PALLET_STATS=1: a warning"
  elif grep -q 'pallet statistics' "$TMP/out"; then fail "PALLET_STATS=1: report on stdout"
  else pass "PALLET_STATS=1 prints the report at exit on stderr"; fi
fi
run PALLET_STATS=0 -- work
expect_clean "PALLET_STATS=0: no report"

# ---- warnings ------------------------------------------------------------
run PALLET_VERBOSE=bogus -- work
expect_one_warning "PALLET_VERBOSE=bogus" PALLET_VERBOSE
run PALLET_FOO=1 -- work
expect_one_warning "PALLET_FOO=1 (unknown option)" PALLET_FOO
for opt in STATS VERBOSE TCACHE_MAX DECAY_MS PURGE CANARY JUNK BACKGROUND_THREAD \
           DIRTY_MAX RETAIN_CHUNKS HEAPS; do
  for bad in bogus -1 12x; do
    run "PALLET_$opt=$bad" -- work
    expect_one_warning "PALLET_$opt=$bad" "PALLET_$opt"
  done
done
# Values out of range.
for setting in PALLET_VERBOSE=3 PALLET_TCACHE_MAX=2g PALLET_DECAY_MS=3600001 \
               PALLET_RETAIN_CHUNKS=1025 PALLET_TCACHE_MAX=99999999999999999999999 \
               PALLET_HEAPS=0 PALLET_HEAPS=17; do
  run "$setting" -- work
  expect_one_warning "$setting (out of range)" "${setting%%=*}"
done
# Good values: no warning.
for setting in PALLET_TCACHE_MAX=64k PALLET_DECAY_MS=0 PALLET_PURGE=free \
               PALLET_PURGE=dontneed PALLET_CANARY=0 PALLET_JUNK=no \
               PALLET_BACKGROUND_THREAD=1 PALLET_DIRTY_MAX=0 PALLET_RETAIN_CHUNKS=0 \
               PALLET_DIRTY_MAX=1g PALLET_CANARY=1 PALLET_JUNK=1 PALLET_HEAPS=1 \
               PALLET_HEAPS=16; do
  run "$setting" -- work
  expect_clean "$setting is accepted"
done

# ---- PALLET_HEAPS --------------------------------------------------------
cpus=$(nproc)
[ "$cpus" -gt 16 ] && cpus=16
for setting in "PALLET_HEAPS=3:3" "PALLET_HEAPS=16:16" ":$cpus"; do
  opt=${setting%%:*} want=${setting##*:}
  run $opt PALLET_VERBOSE=1 -- work
  if [ "$rc" -ne 0 ] || ! grep -q "^pallet: .* heaps=$want " "$TMP/err"; then
    fail "${opt:-no PALLET_HEAPS}: the settings line should say heaps=$want"
  else
    pass "${opt:-no PALLET_HEAPS}: $want span heaps"
  fi
done

# ---- PALLET_CANARY -------------------------------------------------------
run PALLET_CANARY=1 -- overflow
expect_abort "PALLET_CANARY=1: a one-byte overflow" "heap buffer overflow 0x"
run -- overflow
expect_clean "without PALLET_CANARY the same overflow goes unnoticed"
run PALLET_CANARY=1 -- overflow-values
expect_clean "PALLET_CANARY=1: one-byte overflows of every value but the pad's, blocks of 1 B to 5 MiB"

# A large block freed twice around a small malloc: a double free in every
# mode (the modes without a thread cache park the block too).
for opts in "" PALLET_CANARY=1 PALLET_JUNK=1; do
  run $opts -- large-twice
  expect_abort "${opts:-no options}: a large block freed twice, a small malloc between" "double free 0x"
  expect_report_on_target "${opts:-no options}: large-twice" "free(): double free"
done

# The same with a small block and a malloc of its size between: only
# PALLET_CANARY's quarantine keeps the freed block from being handed out
# again (without it, the second free frees that allocation, here as in any
# allocator: the check that it did is what proves the test can fail).
run PALLET_CANARY=1 -- small-twice
expect_abort "PALLET_CANARY=1: a small block freed twice, a malloc of its size between" "double free 0x"
expect_report_on_target "PALLET_CANARY=1: small-twice" "free(): double free"
run -- small-twice
if [ "$rc" -ne 0 ] || ! grep -q '^same=1$' "$TMP/out"; then
  fail "without PALLET_CANARY a malloc right after a free should get that block back (status $rc)"
else
  pass "without PALLET_CANARY the freed block comes back at once (the reuse the quarantine delays)"
fi
run PALLET_CANARY=1 -- work
expect_clean "PALLET_CANARY=1: the program works (no false alarm)"

# A write after free that wipes the block's free key (its first word),
# then a second free: the quarantine knows the block by address.  In
# the default mode the key was all there was to tell, and the second
# free goes through (doc/security.md): the check that it does is what
# proves the test can fail.
for opts in PALLET_CANARY=1 "PALLET_CANARY=1 PALLET_JUNK=1"; do
  run $opts -- uaf-then twice
  expect_abort "$opts: a block freed, its key overwritten, freed again" "double free 0x"
  expect_report_on_target "$opts: uaf-then twice" "free(): double free"
done
run -- uaf-then twice
expect_clean "without PALLET_CANARY a wiped key lets the second free through"
# The same for 64 blocks spread over a full quarantine (4096 blocks, whose
# set of addresses has runs of collisions after 1904 removals): each must
# be found.  (A removal that only emptied its slot, cutting the runs,
# missed 15 of them.)
run PALLET_CANARY=1 -- wiped-many
if [ "$rc" -ne 0 ] || [ "$(value misses)" != 0 ]; then
  fail "PALLET_CANARY=1: wiped keys over a full quarantine: $(value misses) of 64 second frees not caught (status $rc)"
else
  pass "PALLET_CANARY=1: wiped keys over a full quarantine: all 64 second frees caught"
fi
# The write itself, reported when the block leaves the quarantine:
# emptied by malloc_trim, or pushed out by 5000 frees.  Without
# PALLET_JUNK only the key is known (byte 0); with it, every byte.
for then in trim:malloc_trim evict:free; do
  run PALLET_CANARY=1 -- uaf-then "${then%%:*}" 0
  expect_abort "PALLET_CANARY=1: a freed block's key overwritten, then ${then%%:*}" "write after free 0x"
  expect_report_on_target "PALLET_CANARY=1: uaf-then ${then%%:*} 0" "${then#*:}(): write after free"
  run PALLET_CANARY=1 PALLET_JUNK=1 -- uaf-then "${then%%:*}" 40
  expect_abort "PALLET_CANARY=1 PALLET_JUNK=1: byte 40 of a freed block written, then ${then%%:*}" "write after free 0x"
  expect_report_on_target "PALLET_CANARY=1 PALLET_JUNK=1: uaf-then ${then%%:*} 40" "${then#*:}(): write after free"
  run PALLET_CANARY=1 -- uaf-then "${then%%:*}" 40
  expect_clean "PALLET_CANARY=1 alone: byte 40 of a freed block (the program's old data) is not checked"
done

# ---- PALLET_JUNK ---------------------------------------------------------
run PALLET_JUNK=1 -- uaf
expect_abort "PALLET_JUNK=1: a write after free" "write after free 0x"
run -- uaf
expect_clean "without PALLET_JUNK the same write goes unnoticed"
for at in 0 8 63; do
  run PALLET_JUNK=1 -- uaf "$at"
  expect_abort "PALLET_JUNK=1: a write after free at byte $at" "write after free 0x"
done
run PALLET_JUNK=1 -- work
expect_clean "PALLET_JUNK=1: the program works (no false alarm)"

# ---- PALLET_TCACHE_MAX ---------------------------------------------------
run PALLET_TCACHE_MAX=64k -- tcache
small=$(value tcache)
run -- tcache
big=$(value tcache)
if [ -z "$small" ] || [ -z "$big" ]; then
  fail "PALLET_TCACHE_MAX: the program printed no tcache value"
elif [ "$small" -gt $((128 << 10)) ]; then
  fail "PALLET_TCACHE_MAX=64k: the thread cache holds $small bytes (allowed 64 KiB + 64 KiB slack)"
elif [ "$big" -le $((256 << 10)) ]; then
  fail "PALLET_TCACHE_MAX: with the default the same program caches only $big bytes; the check proves nothing"
else
  pass "PALLET_TCACHE_MAX=64k: tcache $small bytes (default: $big)"
fi

# ---- PALLET_TCACHE_TOTAL -------------------------------------------------
# 16 workers and the main thread: each budget is max(4 MiB / 17, 512 KiB).
run PALLET_TCACHE_TOTAL=4m -- tcache-threads
small=$(value tcache)
run PALLET_TCACHE_TOTAL=0 -- tcache-threads
big=$(value tcache)
bound=$((17 * (576 << 10)))
if [ -z "$small" ] || [ -z "$big" ]; then
  fail "PALLET_TCACHE_TOTAL: the program printed no tcache value"
elif [ "$small" -gt "$bound" ]; then
  fail "PALLET_TCACHE_TOTAL=4m: 17 caches hold $small bytes (allowed 17 x (512 KiB + 64 KiB slack) = $bound)"
elif [ "$big" -le "$bound" ]; then
  fail "PALLET_TCACHE_TOTAL=0: the same program caches only $big bytes; the check proves nothing"
else
  pass "PALLET_TCACHE_TOTAL=4m: 17 caches hold $small bytes (0: $big)"
fi

# ---- PALLET_DECAY_MS and PALLET_DIRTY_MAX --------------------------------
# decay MS: a 128 MiB burst of blocks above 32 KiB is freed, then 0.5 s of
# light activity.  back KIND: the RSS at the end compared with the start.
check_decay() {
  local what=$1 want=$2 start freed end
  start=$(value rss_start) freed=$(value rss_freed) end=$(value rss_end)
  if [ "$rc" -ne 0 ] || [ -z "$end" ]; then
    fail "$what: the program failed (status $rc)"; return
  fi
  local msg="rss start $((start / MIB)) MiB, after the frees $((freed / MIB)) MiB, 0.5 s later $((end / MIB)) MiB"
  if [ "$want" = back ] && [ "$end" -gt $((start + 16 * MIB)) ]; then
    fail "$what: memory not given back: $msg"
  elif [ "$want" = kept ] && [ "$end" -lt $((start + 64 * MIB)) ]; then
    fail "$what: memory was given back although nothing should have: $msg"
  else
    pass "$what: $msg"
  fi
}
run PALLET_DECAY_MS=0 PALLET_DIRTY_MAX=1g -- decay 500
check_decay "PALLET_DECAY_MS=0 (dirty limit 1g)" back
run PALLET_DECAY_MS=600000 PALLET_DIRTY_MAX=1g -- decay 500
check_decay "PALLET_DECAY_MS=600000 (dirty limit 1g), the control" kept
run PALLET_DIRTY_MAX=0 PALLET_DECAY_MS=600000 -- decay 500
check_decay "PALLET_DIRTY_MAX=0 (decay 10 min)" back

# ---- PALLET_RETAIN_CHUNKS ------------------------------------------------
run PALLET_RETAIN_CHUNKS=0 -- retain
none=$(value chunks)
run -- retain
dflt=$(value chunks)
run PALLET_RETAIN_CHUNKS=8 -- retain
eight=$(value chunks)
if [ -z "$none" ] || [ -z "$dflt" ] || [ -z "$eight" ]; then
  fail "PALLET_RETAIN_CHUNKS: the program printed no chunk count"
elif ! [ "$none" -lt "$dflt" ] || ! [ "$dflt" -lt "$eight" ]; then
  fail "PALLET_RETAIN_CHUNKS: chunks after trim: $none with 0, $dflt by default, $eight with 8 (expected increasing)"
else
  pass "PALLET_RETAIN_CHUNKS: chunks after trim: $none with 0, $dflt by default, $eight with 8"
fi

# ---- PALLET_PURGE=free ---------------------------------------------------
run PALLET_PURGE=free -- reuse
expect_clean "PALLET_PURGE=free: purged memory reused, calloc reads zero"
run PALLET_PURGE=free PALLET_DECAY_MS=0 -- decay 200
if [ "$rc" -ne 0 ] || grep -q pallet "$TMP/err"; then
  fail "PALLET_PURGE=free with decay: status $rc"
else
  pass "PALLET_PURGE=free with decay runs"
fi

echo "options_effect: $checks runs, $failed failed"
[ "$failed" -eq 0 ]
