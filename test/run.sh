#!/bin/bash
# test/run.sh — the README's test command: from a fresh Debian 12 machine
# (as root) to a passing test suite.  It installs what it needs, then:
#   1. builds pallet with -Wall -Wextra -Werror and runs make check
#      (unit, API, misuse, thread, fork, link and real-program tests, and
#      the stress harness's own test);
#   2. runs the unit and API tests again in a debug build (assertions and
#      heap invariant checks) under ASan and UBSan, through the pallet_ API;
#      and builds and checks the --disable-hardening and
#      --disable-initial-exec-tls configurations;
#   3. drives the stress harness through the pallet_ API in a
#      ThreadSanitizer build;
#   4. runs pallet-stress for 60 s with libpallet.so preloaded;
#   5. runs the libFuzzer harness for 60 s;
#   6. make distcheck.
# Set PL_TEST_QUICK=1 to run only step 1; TEST_NO_APT=1 to skip apt-get.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

packages=(build-essential autoconf automake libtool pkg-config libcmocka-dev
  clang libclang-rt-14-dev llvm python3 git perl sqlite3 nodejs
  redis-server redis-tools libjemalloc-dev time procps)

if [ "${TEST_NO_APT:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${packages[@]}"
fi

step() { printf '\n==== %s ====\n' "$*"; }

# make check in the current build tree; on failure, the tail of every
# test log that reports a failure, then exit.
check_or_show_logs() {
  make -j"$jobs" check && return 0
  for f in $(find . -name '*.log' -newer configure.log); do
    grep -q '^FAIL\|^ERROR' "$f" 2>/dev/null && { echo "---- $f"; tail -40 "$f"; }
  done
  exit 1
}

step "autoreconf"
autoreconf -fi

# 1. The release build, warnings as errors, the whole suite.
step "release build with -Werror; make check"
mkdir -p build-ci && cd build-ci
../configure --enable-werror >configure.log 2>&1 || { cat configure.log; exit 1; }
make -j"$jobs"
check_or_show_logs
cd "$top"
[ "${PL_TEST_QUICK:-0}" = 1 ] && { echo "test/run.sh: quick mode: done"; exit 0; }

# 2. Debug build under ASan + UBSan: the tests that drive the pallet_ API
#    (sanitizers interpose malloc themselves, so no override here).
step "debug build under ASan and UBSan; make check"
mkdir -p build-asan && cd build-asan
CC=${SAN_CC:-gcc} ../configure --enable-werror --enable-debug --disable-override \
  --enable-sanitize=address,undefined >configure.log 2>&1 || { cat configure.log; exit 1; }
make -j"$jobs"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
check_or_show_logs
unset ASAN_OPTIONS UBSAN_OPTIONS
cd "$top"

# 2b. The build with the fast-path checks compiled out (the benchmarks'
#     comparison point): it builds, and its suite passes (the death tests
#     of small-block misuse that only the checks catch are left out there).
step "build with --disable-hardening; make check"
mkdir -p build-nohard && cd build-nohard
../configure --enable-werror --disable-hardening >configure.log 2>&1 || { cat configure.log; exit 1; }
make -j"$jobs"
check_or_show_logs
cd "$top"

# 2c. Global-dynamic TLS (for dlopen): the fast paths reach the thread's
#     bins through plain C instead of %fs; its suite passes, and
#     test/link_dlopen loads it without a bigger static TLS surplus.
step "build with --disable-initial-exec-tls; make check"
mkdir -p build-gdtls && cd build-gdtls
../configure --enable-werror --disable-initial-exec-tls >configure.log 2>&1 || { cat configure.log; exit 1; }
make -j"$jobs"
check_or_show_logs
cd "$top"

# 3. ThreadSanitizer: the stress harness through the pallet_ API.
step "ThreadSanitizer build; pallet-stress-api"
mkdir -p build-tsan && cd build-tsan
../configure --enable-debug --disable-override --enable-sanitize=thread \
  >configure.log 2>&1 || { cat configure.log; exit 1; }
make -j"$jobs" tools/pallet-stress-api
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ./tools/pallet-stress-api --threads 4 --duration 60 --fork-every 50000 --churn \
  --cross 20 --min-align 16 --watchdog 60 --quiet
cd "$top"

# 4. A minute of stress with pallet preloaded.
step "pallet-stress, 60 s, libpallet.so preloaded"
LD_PRELOAD="$top/build-ci/.libs/libpallet.so" \
  build-ci/tools/pallet-stress --threads 4 --duration 60 --fork-every 50000 --churn \
  --cross 20 --min-align 16 --json

# 5. A minute of fuzzing.
step "libFuzzer, 60 s"
if (cd build-ci && make -n fuzz >/dev/null 2>&1); then
  (cd build-ci && make fuzz && make fuzz-run FUZZ_SECONDS=60)
else
  echo "no fuzz target in this tree"; exit 1
fi

# 6. The release tarball builds and passes its own tests.
step "make distcheck"
(cd build-ci && make -j"$jobs" distcheck)

step "all passed"
echo "test/run.sh: 8 passed, 0 failed"
