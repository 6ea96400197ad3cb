/*
 * unit_options.c — unit tests of PALLET_* option parsing (options.h) with
 * synthetic environments: each option's good values set its field; bad
 * values (garbage, overflow, negative, out of range, empty, missing '=')
 * leave the field as it was and print exactly one warning line naming
 * the variable; an unknown PALLET_ name warns once; other variables are
 * ignored silently.  stderr is captured by pointing fd 2 at a temporary
 * file around each parse (pallet writes its warnings with write(2)).
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "lifecycle.h"
#include "options.h"

static pl_options_t baseline;

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  baseline = pl_opt;
  return 0;
}

static int reset(void **state) {
  (void)state;
  pl_opt = baseline;
  return 0;
}

/* Leaves the options as they were (PALLET_STATS=1 would report at exit). */
static int teardown(void **state) { return reset(state); }

/* Parses envp with stderr captured into out; returns the number of lines
 * written. */
static size_t parse_capture(char *const *envp, char *out, size_t outsz) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stderr);
  int saved = dup(2);
  assert_true(saved >= 0);
  assert_true(dup2(fileno(tmp), 2) >= 0);
  pl_options_parse(envp);
  assert_true(dup2(saved, 2) >= 0);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, outsz - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
  size_t lines = 0;
  for (size_t i = 0; i < n; i++) lines += out[i] == '\n';
  if (n > 0 && out[n - 1] != '\n') lines++; /* an unterminated line counts */
  return lines;
}

static size_t parse_one(const char *entry, char *out, size_t outsz) {
  char *env[2] = {(char *)entry, NULL};
  return parse_capture(env, out, outsz);
}

/* The variable name of an entry (up to '='). */
static void name_of(const char *entry, char *name, size_t n) {
  size_t k = 0;
  while (entry[k] && entry[k] != '=' && k + 1 < n) {
    name[k] = entry[k];
    k++;
  }
  name[k] = '\0';
}

static void expect_silent(const char *entry) {
  char out[1024];
  size_t lines = parse_one(entry, out, sizeof out);
  if (lines != 0) fail_msg("%s: expected no output, got:\n%s", entry, out);
}

/* A bad value: field unchanged (compared by the caller), one line naming
 * the variable. */
static void expect_warning(const char *entry) {
  char out[1024], name[80];
  name_of(entry, name, sizeof name);
  pl_options_t before = pl_opt;
  size_t lines = parse_one(entry, out, sizeof out);
  if (lines != 1) fail_msg("%s: expected one warning line, got %zu:\n%s", entry, lines, out);
  if (strstr(out, name) == NULL || strstr(out, "warning") == NULL)
    fail_msg("%s: the warning does not name %s:\n%s", entry, name, out);
  if (memcmp(&before, &pl_opt, sizeof before) != 0)
    fail_msg("%s: a bad value changed the options", entry);
}

/* ---- the options, one by one ----------------------------------------- */

struct bool_case { const char *v; bool want; };
static const struct bool_case bool_good[] = {
    {"1", true}, {"true", true}, {"yes", true}, {"on", true},
    {"0", false}, {"false", false}, {"no", false}, {"off", false},
};
static const char *const bool_bad[] = {"", "2", "-1", "maybe", "1x", " 1", "yess", "o"};

static void check_bool(const char *var, bool *field) {
  char e[128];
  for (size_t i = 0; i < sizeof bool_good / sizeof bool_good[0]; i++) {
    *field = !bool_good[i].want;
    snprintf(e, sizeof e, "%s=%s", var, bool_good[i].v);
    expect_silent(e);
    if (*field != bool_good[i].want) fail_msg("%s did not set the field", e);
  }
  for (int start = 0; start < 2; start++)
    for (size_t i = 0; i < sizeof bool_bad / sizeof bool_bad[0]; i++) {
      *field = start;
      snprintf(e, sizeof e, "%s=%s", var, bool_bad[i]);
      expect_warning(e);
      assert_int_equal(*field, start);
    }
  /* No '=' at all: the value is missing. */
  expect_warning(var);
}

static void test_bools(void **state) {
  (void)state;
  check_bool("PALLET_STATS", &pl_opt.stats);
  check_bool("PALLET_CANARY", &pl_opt.canary);
  check_bool("PALLET_JUNK", &pl_opt.junk);
  check_bool("PALLET_BACKGROUND_THREAD", &pl_opt.background);
}

struct num_case { const char *v; uint64_t want; };

/* Numbers: good values set the field (read back through get), bad ones
 * warn and leave it. */
static void check_num(const char *var, uint64_t (*get)(void), void (*set)(uint64_t),
                      const struct num_case *good, size_t ngood,
                      const char *const *bad, size_t nbad) {
  char e[160];
  for (size_t i = 0; i < ngood; i++) {
    set(good[i].want + 1);
    snprintf(e, sizeof e, "%s=%s", var, good[i].v);
    expect_silent(e);
    if (get() != good[i].want)
      fail_msg("%s: field is %llu, want %llu", e, (unsigned long long)get(),
               (unsigned long long)good[i].want);
  }
  for (size_t i = 0; i < nbad; i++) {
    set(1);
    snprintf(e, sizeof e, "%s=%s", var, bad[i]);
    expect_warning(e);
    assert_int_equal(get(), 1);
  }
  expect_warning(var);
}

/* Values no number option accepts. */
#define COMMON_BAD \
  "", "-1", "abc", "12q", "1.5", "0x10", " 5", "5 ", "+3", "1kk", \
      "18446744073709551616", "99999999999999999999", "18014398509481984k"

static uint64_t get_verbose(void) { return (uint64_t)pl_opt.verbose; }
static void set_verbose(uint64_t v) { pl_opt.verbose = (int)v; }
static uint64_t get_tcache(void) { return pl_opt.tcache_max; }
static void set_tcache(uint64_t v) { pl_opt.tcache_max = (size_t)v; }
static uint64_t get_total(void) { return pl_opt.tcache_total; }
static void set_total(uint64_t v) { pl_opt.tcache_total = (size_t)v; }
static uint64_t get_decay(void) { return pl_opt.decay_ms; }
static void set_decay(uint64_t v) { pl_opt.decay_ms = v; }
static uint64_t get_retain(void) { return pl_opt.retain_chunks; }
static void set_retain(uint64_t v) { pl_opt.retain_chunks = (size_t)v; }
static uint64_t get_heaps(void) { return pl_opt.heaps; }
static void set_heaps(uint64_t v) { pl_opt.heaps = (unsigned)v; }
static uint64_t get_dirty(void) { return pl_opt.dirty_max; }
static void set_dirty(uint64_t v) { pl_opt.dirty_max = (size_t)v; }

static void test_verbose(void **state) {
  (void)state;
  static const struct num_case good[] = {{"0", 0}, {"1", 1}, {"2", 2}, {"00", 0}};
  static const char *const bad[] = {COMMON_BAD, "3", "1k", "4294967298"};
  check_num("PALLET_VERBOSE", get_verbose, set_verbose, good, 4, bad,
            sizeof bad / sizeof bad[0]);
}

static void test_tcache_max(void **state) {
  (void)state;
  static const struct num_case good[] = {
      {"0", 0},           {"65536", 65536},      {"64k", 64 << 10},
      {"64K", 64 << 10},  {"3m", 3 << 20},       {"3M", 3 << 20},
      {"1g", 1 << 30},    {"1G", 1 << 30},       {"1073741824", 1 << 30},
      {"1048576k", 1 << 30},
  };
  static const char *const bad[] = {COMMON_BAD, "2g", "1073741825", "1048577k",
                                    "1025m", "1t", "4m4"};
  check_num("PALLET_TCACHE_MAX", get_tcache, set_tcache, good,
            sizeof good / sizeof good[0], bad, sizeof bad / sizeof bad[0]);
}

static void test_tcache_total(void **state) {
  (void)state;
  static const struct num_case good[] = {
      {"0", 0},           {"32m", 32 << 20},          {"1g", 1 << 30},
      {"64g", (uint64_t)64 << 30}, {"68719476736", (uint64_t)64 << 30},
      {"65536m", (uint64_t)64 << 30},
  };
  static const char *const bad[] = {COMMON_BAD, "65g", "68719476737", "65537m", "1t", "8m8"};
  check_num("PALLET_TCACHE_TOTAL", get_total, set_total, good,
            sizeof good / sizeof good[0], bad, sizeof bad / sizeof bad[0]);
}

static void test_decay(void **state) {
  (void)state;
  static const struct num_case good[] = {
      {"0", 0}, {"250", 250}, {"1000", 1000}, {"3600000", 3600000}};
  static const char *const bad[] = {COMMON_BAD, "3600001", "4g", "1e3"};
  check_num("PALLET_DECAY_MS", get_decay, set_decay, good, 4, bad,
            sizeof bad / sizeof bad[0]);
}

static void test_retain(void **state) {
  (void)state;
  static const struct num_case good[] = {{"0", 0}, {"1", 1}, {"7", 7}, {"1024", 1024}, {"1k", 1024}};
  static const char *const bad[] = {COMMON_BAD, "1025", "2k", "1m"};
  check_num("PALLET_RETAIN_CHUNKS", get_retain, set_retain, good, 5, bad,
            sizeof bad / sizeof bad[0]);
}

static void test_heaps(void **state) {
  (void)state;
  static const struct num_case good[] = {{"1", 1}, {"2", 2}, {"16", 16}, {"08", 8}};
  static const char *const bad[] = {COMMON_BAD, "0", "17", "1k", "4294967297"};
  check_num("PALLET_HEAPS", get_heaps, set_heaps, good, 4, bad, sizeof bad / sizeof bad[0]);
}

static void test_dirty_max(void **state) {
  (void)state;
  static const struct num_case good[] = {
      {"0", 0}, {"8m", 8 << 20}, {"12345", 12345}, {"1024g", (uint64_t)1 << 40}};
  static const char *const bad[] = {COMMON_BAD, "1025g", "1099511627777"};
  check_num("PALLET_DIRTY_MAX", get_dirty, set_dirty, good, 4, bad,
            sizeof bad / sizeof bad[0]);
}

static void test_purge(void **state) {
  (void)state;
  pl_opt.purge = 1;
  expect_silent("PALLET_PURGE=dontneed");
  assert_int_equal(pl_opt.purge, 0);
  expect_silent("PALLET_PURGE=free");
  assert_int_equal(pl_opt.purge, 1);
  static const char *const bad[] = {"PALLET_PURGE=", "PALLET_PURGE=FREE",
                                    "PALLET_PURGE=madvise", "PALLET_PURGE=1",
                                    "PALLET_PURGE=freee", "PALLET_PURGE=dont",
                                    "PALLET_PURGE"};
  for (int start = 0; start < 2; start++)
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      pl_opt.purge = start;
      expect_warning(bad[i]);
      assert_int_equal(pl_opt.purge, start);
    }
}

/* ---- names ------------------------------------------------------------ */

static void test_unknown(void **state) {
  (void)state;
  expect_warning("PALLET_FOO=1");
  expect_warning("PALLET_FOO");
  expect_warning("PALLET_=1");
  expect_warning("PALLET_stats=1"); /* names are case-sensitive */
  expect_warning("PALLET_STATSX=1");
  expect_warning("PALLET_STAT=1");
  /* A very long name still gives exactly one line. */
  char longname[300];
  memset(longname, 'X', sizeof longname);
  memcpy(longname, "PALLET_", 7);
  strcpy(longname + 250, "=1");
  char out[1024];
  pl_options_t before = pl_opt;
  assert_int_equal(parse_one(longname, out, sizeof out), 1);
  assert_non_null(strstr(out, "PALLET_XXXX"));
  assert_memory_equal(&before, &pl_opt, sizeof before);
}

static void test_ignored(void **state) {
  (void)state;
  static const char *const other[] = {
      "PATH=/usr/bin", "pallet_stats=1", "XPALLET_STATS=1", "PALLETSTATS=1",
      "PALLET=1",      "LIBPALLET_SO=/x.so", "_PALLET_STATS=1", "", "=", "PALLE",
  };
  pl_options_t before = pl_opt;
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    expect_silent(other[i]);
    assert_memory_equal(&before, &pl_opt, sizeof before);
  }
  char out[256];
  assert_int_equal(parse_capture(NULL, out, sizeof out), 0);
  char *empty[1] = {NULL};
  assert_int_equal(parse_capture(empty, out, sizeof out), 0);
  assert_memory_equal(&before, &pl_opt, sizeof before);
}

/* A whole environment: every good setting applied, one line per bad or
 * unknown one, others ignored, the last of repeated settings wins. */
static void test_environment(void **state) {
  (void)state;
  char *env[] = {
      "HOME=/root",
      "PALLET_VERBOSE=1",
      "PALLET_STATS=yes",
      "PALLET_TCACHE_MAX=bogus",
      "PALLET_DECAY_MS=500",
      "PALLET_NOPE=3",
      "PALLET_VERBOSE=2",
      "PALLET_RETAIN_CHUNKS=4",
      "TERM=dumb",
      "PALLET_PURGE=free",
      NULL,
  };
  char out[2048];
  size_t lines = parse_capture(env, out, sizeof out);
  if (lines != 2) fail_msg("expected 2 warning lines, got %zu:\n%s", lines, out);
  assert_non_null(strstr(out, "PALLET_TCACHE_MAX"));
  assert_non_null(strstr(out, "PALLET_NOPE"));
  assert_int_equal(pl_opt.verbose, 2);
  assert_true(pl_opt.stats);
  assert_int_equal(pl_opt.tcache_max, baseline.tcache_max);
  assert_int_equal(pl_opt.decay_ms, 500);
  assert_int_equal(pl_opt.retain_chunks, 4);
  assert_int_equal(pl_opt.purge, 1);
  assert_int_equal(pl_opt.canary, baseline.canary);
  assert_int_equal(pl_opt.junk, baseline.junk);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_bools, reset),
      cmocka_unit_test_setup(test_verbose, reset),
      cmocka_unit_test_setup(test_tcache_max, reset),
      cmocka_unit_test_setup(test_tcache_total, reset),
      cmocka_unit_test_setup(test_decay, reset),
      cmocka_unit_test_setup(test_retain, reset),
      cmocka_unit_test_setup(test_heaps, reset),
      cmocka_unit_test_setup(test_dirty_max, reset),
      cmocka_unit_test_setup(test_purge, reset),
      cmocka_unit_test_setup(test_unknown, reset),
      cmocka_unit_test_setup(test_ignored, reset),
      cmocka_unit_test_setup(test_environment, reset),
  };
  return cmocka_run_group_tests_name("unit_options", tests, setup, teardown);
}
