/*
 * footprint_churn.c — the footprint stays flat under thread churn.
 *
 * 20,000 short-lived threads, in waves of 25 running at once; each
 * allocates a mix of small and medium blocks (and every 50th thread a
 * large one), frees most of them itself and leaves a few for the next wave
 * to free (remote frees).  After the first wave has warmed everything up
 * (caches, stacks glibc keeps for reuse, pallet's metadata), the resident
 * set must grow by less than 16 MiB over the remaining 19,975 threads, and
 * pallet's metadata by less than 4 MiB: a thread cache, or its blocks,
 * not given back when its thread exits would add up to far more.  At the
 * end pallet_stats_get().threads is back to its starting value.
 */
#include "footprint_util.h"

#include <pthread.h>

enum { WAVE = 25, THREADS = 20000, NBLOCKS = 48, HANDOVER = 3 };

#define RSS_GROWTH_MAX (16 * FP_MIB)
#define META_GROWTH_MAX (4 * FP_MIB)

struct worker {
  unsigned index;
  void *give[HANDOVER]; /* in: blocks of the previous wave to free */
  void *keep[HANDOVER]; /* out: blocks for the next wave */
  int bad;
};

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  void *p[NBLOCKS];
  size_t n[NBLOCKS];
  uint64_t s = (uint64_t)w->index * 0x9E3779B97F4A7C15ull + 1;
  unsigned i;

  for (i = 0; i < HANDOVER; i++)
    pallet_free(w->give[i]);
  for (i = 0; i < NBLOCKS; i++) {
    uint64_t r = fp_rand(&s);
    if (i == 0 && w->index % 50 == 0)
      n[i] = 300 * FP_KIB + (size_t)(r % (600 * FP_KIB)); /* large */
    else if (i % 8 == 7)
      n[i] = 1024 + (size_t)(r % (60 * FP_KIB));          /* medium */
    else
      n[i] = 8 + (size_t)(r % 1000);                      /* small */
    p[i] = pallet_malloc(n[i]);
    if (p[i] == NULL) {
      w->bad = 1;
      return NULL;
    }
    memset(p[i], (int)(i + 1), n[i] < 256 ? n[i] : 256);
  }
  for (i = 0; i < NBLOCKS; i++) {
    unsigned char *c = p[i];
    if (c[0] != (unsigned char)(i + 1) || c[(n[i] < 256 ? n[i] : 256) - 1] != (unsigned char)(i + 1))
      w->bad = 1;
  }
  for (i = 0; i < NBLOCKS; i++) {
    if (i >= 1 && i <= HANDOVER)
      w->keep[i - 1] = p[i];
    else
      pallet_free(p[i]);
  }
  return NULL;
}

static void test_thread_churn_footprint(void **state)
{
  static struct worker w[WAVE];
  pthread_t t[WAVE];
  void *pending[WAVE][HANDOVER];
  pallet_stats_t st0, st1, st;
  size_t rss1 = 0, rss_max = 0, rss_end;
  unsigned wave, i, j, bad = 0;
  (void)state;
  tu_watchdog("footprint_churn", 90);

  memset(pending, 0, sizeof pending);
  /* The main thread gets its own cache first (it frees blocks below). */
  pallet_free(pallet_malloc(64));
  pallet_stats_get(&st0);
  memset(&st1, 0, sizeof st1);

  for (wave = 0; wave < THREADS / WAVE; wave++) {
    for (i = 0; i < WAVE; i++) {
      memset(&w[i], 0, sizeof w[i]);
      w[i].index = wave * WAVE + i;
      for (j = 0; j < HANDOVER; j++)
        w[i].give[j] = pending[(i + 1) % WAVE][j]; /* another thread's */
      assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < WAVE; i++) {
      assert_int_equal(pthread_join(t[i], NULL), 0);
      bad |= (unsigned)w[i].bad;
      for (j = 0; j < HANDOVER; j++)
        pending[i][j] = w[i].keep[j];
    }
    if (wave == 0) {
      rss1 = fp_rss();
      pallet_stats_get(&st1);
    } else if (wave % 50 == 0) {
      size_t r = fp_rss();
      if (r > rss_max)
        rss_max = r;
    }
  }
  for (i = 0; i < WAVE; i++)
    for (j = 0; j < HANDOVER; j++)
      pallet_free(pending[i][j]);

  rss_end = fp_rss();
  if (rss_end > rss_max)
    rss_max = rss_end;
  pallet_stats_get(&st);
  print_message("    after wave 1: rss %.1f MiB, metadata %.1f MiB; highest later %.1f MiB; "
                "end %.1f MiB, metadata %.1f MiB, mapped %.1f MiB; threads %zu (start %zu)\n",
                fp_mib(rss1), fp_mib(st1.metadata), fp_mib(rss_max), fp_mib(rss_end),
                fp_mib(st.metadata), fp_mib(st.mapped), st.threads, st0.threads);
  assert_int_equal(bad, 0);
  if (rss_max >= rss1 + RSS_GROWTH_MAX)
    fail_msg("RSS grew by %.1f MiB over %u threads (allowed < %.0f MiB)",
             fp_smib((long long)rss_max - (long long)rss1), THREADS - WAVE,
             fp_mib(RSS_GROWTH_MAX));
  if (st.metadata >= st1.metadata + META_GROWTH_MAX)
    fail_msg("pallet's metadata grew by %.1f MiB over %u threads",
             fp_smib((long long)st.metadata - (long long)st1.metadata), THREADS - WAVE);
  assert_int_equal(st.threads, st0.threads);
  assert_int_equal(st.allocated, st0.allocated);
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thread_churn_footprint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
