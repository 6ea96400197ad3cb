#!/bin/bash
# no_arena.sh — pallet without its heap arena.  Under a ulimit -v too small
# for the arena's smallest reservation (256 MiB), every heap chunk is
# mapped on its own and free() always takes the slow path; everything must
# still work.  Runs, with PL_TEST_NO_ARENA=1 (test_arena_slots then checks
# that no chunk came from an arena):
#   the unit tests of the span heap, chunks, central lists and caches;
#   pallet-stress for 3 s under LD_PRELOAD (with its heap check at the end).
# Then, under a ulimit -v that fits only the smallest arena (256 MiB) and
# some more, unit_span with PL_TEST_SMALL_ARENA=1: chunks fill the arena,
# later ones are mapped outside it, and the two kinds work side by side.
# Exit status: 0 passed, 1 failed, 77 skipped (not built here), 99 set-up error.

set -u
top=${PL_TEST_BUILDDIR:-$PWD}
lib=${LIBPALLET_SO:-$top/.libs/libpallet.so}
status=0

run() { # name command...  (with $limit and $envvar set)
  local name=$1; shift
  if ( ulimit -v "$limit" && env "$envvar=1" "$@" ) > "$TMP/$name.log" 2>&1; then
    echo "ok: $name"
  else
    echo "FAIL: $name (ulimit -v $limit, $envvar=1); its output:"
    tail -20 "$TMP/$name.log"
    status=1
  fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pallet-noarena.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

limit=240000 envvar=PL_TEST_NO_ARENA
for t in unit_span unit_chunk unit_central unit_tcache; do
  if [ ! -x "$top/test/$t" ]; then echo "no_arena: $top/test/$t not built" >&2; exit 77; fi
  run "$t" "$top/test/$t"
done
if [ -x "$top/tools/pallet-stress" ] && [ -e "$lib" ]; then
  run pallet-stress env LD_PRELOAD="$lib" "$top/tools/pallet-stress" --threads 2 --duration 3
else
  echo "no_arena: pallet-stress or $lib not built" >&2
  exit 99
fi
limit=450000 envvar=PL_TEST_SMALL_ARENA
run unit_span-small-arena "$top/test/unit_span"
exit $status
