#!/bin/bash
# bench/run.sh — one command from a fresh Debian 12 machine to the
# benchmark table: installs what is needed (as root), builds pallet out of
# tree in build-bench/, builds the benchmarks and runs bench/runner against
# glibc, jemalloc, tcmalloc, mimalloc and pallet.
#
#   sudo bench/run.sh              full run (5 repetitions)
#   sudo bench/run.sh --quick      2 repetitions, fewer operations
#   sudo bench/run.sh --callgrind  instructions per malloc+free pair
# Any argument is passed to bench/runner (see bench/runner --help).
# Safe to run again: installs are no-ops, the build is incremental.
# Set BENCH_NO_APT=1 to skip apt-get (packages already there).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

packages=(build-essential autoconf automake libtool pkg-config
  libcmocka-dev libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  valgrind gnuplot-nox redis-server redis-tools time python3)

if [ "${BENCH_NO_APT:-0}" = 1 ]; then
  echo "run.sh: BENCH_NO_APT=1: not installing packages"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${packages[@]}"
else
  echo "run.sh: not root (or no apt-get): not installing packages; they are:"
  echo "  ${packages[*]}"
fi

# The redis-server package starts a system redis on port 6379.  The runner
# uses its own redis-server on a private port, but a second server busy in
# the background would disturb the measurements on a small machine: stop
# the packaged service (it stays installed; `systemctl start redis-server`
# brings it back).
if [ "$(id -u)" -eq 0 ]; then
  if command -v systemctl >/dev/null &&
     systemctl is-active --quiet redis-server 2>/dev/null; then
    echo "run.sh: stopping the packaged redis-server service"
    systemctl stop redis-server || true
  elif command -v service >/dev/null &&
       service redis-server status >/dev/null 2>&1; then
    echo "run.sh: stopping the packaged redis-server service"
    service redis-server stop || true
  fi
fi

autoreconf -fi
mkdir -p build-bench
cd build-bench
if [ ! -f config.status ]; then
  ../configure
fi
jobs=$(nproc 2>/dev/null || echo 2)
bench_targets="bench/bench-bands bench/bench-workingset bench/bench-prodcons
  bench/bench-larson bench/bench-scaling bench/bench-realloc bench/bench-frag
  bench/bench-bigblocks bench/bench-servermix bench/bench-bursts
  bench/bench-buffers bench/bench-pipeline bench/bumpalloc.la"
pallet_lib=${LIBPALLET_SO:-$top/build-bench/.libs/libpallet.so}
if ! make -j"$jobs"; then
  echo "run.sh: building pallet failed; building only the benchmarks," \
       "pallet will be skipped" >&2
  # shellcheck disable=SC2086
  make -j"$jobs" $bench_targets
  # never time a stale library from an earlier build
  pallet_lib="$top/build-bench/.libs/libpallet.so.FAILED-TO-BUILD"
fi
cd "$top"

exec python3 bench/runner --bindir "$top/build-bench/bench" \
  --pallet "$pallet_lib" \
  --bump "$top/build-bench/bench/.libs/bumpalloc.so" "$@"
