/*
 * footprint_trim.c — malloc_trim gives memory back.
 *
 * Allocates 256 MiB of mixed small, medium, large and huge blocks (every
 * byte written), frees them in shuffled order, then calls
 * pallet_malloc_trim(0): the resident set must come back within 8 MiB of
 * where it started, trim must say it released memory (1) — and, called
 * again with nothing left to release, 0 — and pallet's own statistics must
 * show mapped and resident shrinking.  A second case does the same with
 * blocks freed by a thread other than the one that allocated them.
 */
#include "footprint_util.h"

#include <pthread.h>

#define BURST_BYTES (256 * FP_MIB)
#define BURST_CAP ((size_t)400000)
#define TRIM_MARGIN (8 * FP_MIB)

static void warm_up(void)
{
  /* The first calls set pallet up (options, size classes, the first
   * chunk, this thread's cache): not part of what is measured. */
  void *p = pallet_malloc(100);
  pallet_free(p);
  pallet_malloc_trim(0);
}

static void trim_case(struct fp_burst *b, int other_thread_frees);

struct freer_arg {
  struct fp_burst *b;
};

static void *freer_main(void *arg)
{
  struct freer_arg *fa = arg;
  fp_burst_free(fa->b, 77);
  return NULL;
}

static void trim_case(struct fp_burst *b, int other_thread_frees)
{
  pallet_stats_t st0, st_peak, st_freed, st_trim;
  size_t rss0, rss_peak, rss_freed, rss_trim;
  int r1, r2;

  warm_up();
  rss0 = fp_rss();
  pallet_stats_get(&st0);

  assert_int_equal(fp_burst_alloc(b, BURST_BYTES, 12345, 1, 0), 0);
  rss_peak = fp_rss();
  pallet_stats_get(&st_peak);
  print_message("    burst: %zu blocks, %.1f MiB requested; rss %.1f -> %.1f MiB; "
                "pallet mapped %.1f resident %.1f MiB\n",
                b->n, fp_mib(b->bytes), fp_mib(rss0), fp_mib(rss_peak),
                fp_mib(st_peak.mapped), fp_mib(st_peak.resident));
  /* The measurement must be able to see the burst at all. */
  assert_true(rss_peak > rss0 + BURST_BYTES * 3 / 4);
  assert_true(st_peak.resident >= BURST_BYTES * 3 / 4);

  if (other_thread_frees) {
    pthread_t t;
    struct freer_arg fa;
    fa.b = b;
    assert_int_equal(pthread_create(&t, NULL, freer_main, &fa), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
  } else {
    fp_burst_free(b, 99);
  }
  rss_freed = fp_rss();
  pallet_stats_get(&st_freed);

  r1 = pallet_malloc_trim(0);
  rss_trim = fp_rss();
  pallet_stats_get(&st_trim);
  r2 = pallet_malloc_trim(0);

  print_message("    freed: rss %.1f MiB, mapped %.1f, resident %.1f; after trim "
                "(returned %d, then %d): rss %.1f MiB (start %.1f), mapped %.1f, "
                "resident %.1f, allocated %zu\n",
                fp_mib(rss_freed), fp_mib(st_freed.mapped), fp_mib(st_freed.resident),
                r1, r2, fp_mib(rss_trim), fp_mib(rss0), fp_mib(st_trim.mapped),
                fp_mib(st_trim.resident), st_trim.allocated);

  assert_int_equal(r1, 1);
  /* Nothing was freed since: nothing left to release. */
  assert_int_equal(r2, 0);
  if (rss_trim > rss0 + TRIM_MARGIN)
    fail_msg("after trim RSS is %.1f MiB, start was %.1f MiB (allowed +%.0f MiB)",
             fp_mib(rss_trim), fp_mib(rss0), fp_mib(TRIM_MARGIN));
  /* pallet's view agrees: what it maps and what is resident shrank, to
   * near where they were. */
  assert_true(st_trim.mapped < st_peak.mapped);
  assert_true(st_trim.resident < st_freed.resident || st_freed.resident <= st0.resident + TRIM_MARGIN);
  assert_true(st_trim.resident <= st0.resident + TRIM_MARGIN);
  assert_true(st_trim.mapped <= st0.mapped + TRIM_MARGIN);
  assert_int_equal(st_trim.allocated, st0.allocated);
  assert_int_equal(st_trim.huge, 0);
  assert_int_equal(st_trim.large, st0.large);
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_trim_same_thread(void **state)
{
  struct fp_burst b;
  (void)state;
  tu_watchdog("footprint_trim same thread", 60);
  assert_int_equal(fp_burst_init(&b, BURST_CAP), 0);
  trim_case(&b, 0);
  fp_burst_destroy(&b);
}

static void test_trim_remote_free(void **state)
{
  struct fp_burst b;
  (void)state;
  tu_watchdog("footprint_trim remote free", 60);
  assert_int_equal(fp_burst_init(&b, BURST_CAP), 0);
  trim_case(&b, 1);
  fp_burst_destroy(&b);
}

/* A trim with nothing to give back says so. */
static void test_trim_nothing(void **state)
{
  (void)state;
  warm_up();
  assert_int_equal(pallet_malloc_trim(0), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trim_same_thread),
      cmocka_unit_test(test_trim_remote_free),
      cmocka_unit_test(test_trim_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
