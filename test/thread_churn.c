/*
 * thread_churn.c — tens of thousands of short-lived threads (created in
 * waves of 8), each allocating and freeing a mix of sizes through the
 * pallet_ API and handing a few blocks to main.  Asserts that the
 * process's resident set stays bounded (a thread cache that is not given
 * back on exit shows up here), that pallet's count of live thread caches
 * falls back once the threads are joined, and that the heap is sound.
 */
#include "testutil.h"

#include <pthread.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

enum { WAVE = 8, THREADS = 20000, KEEP = 2 };

struct worker {
  unsigned index;
  void *kept[KEEP];    /* blocks the thread leaves for main to free */
  size_t kept_size[KEEP];
  int bad;
};

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  void *p[40];
  size_t n[40];
  unsigned i, seed = w->index * 2654435761u;
  for (i = 0; i < 40; i++) {
    seed = seed * 1103515245u + 12345u;
    n[i] = (seed >> 8) % (i < 36 ? 700 : 20 * KIB) + 1;
    if (i == 39 && w->index % 64 == 0)
      n[i] = 400 * KIB; /* now and then a large block */
    p[i] = pallet_malloc(n[i]);
    if (p[i] == NULL) {
      w->bad = 1;
      return NULL;
    }
    tu_fill(p[i], n[i], w->index * 64u + i);
  }
  for (i = 0; i < 40; i++)
    if (tu_check(p[i], n[i], w->index * 64u + i) != (size_t)-1)
      w->bad = 1;
  for (i = 0; i < 40; i++) {
    if (i < KEEP) {
      w->kept[i] = p[i];
      w->kept_size[i] = n[i];
    } else {
      pallet_free(p[(i * 7) % 38 + KEEP]); /* a permutation of 2..39 */
    }
  }
  return NULL;
}

static void run_waves(unsigned first, unsigned count)
{
  unsigned t;
  for (t = first; t < first + count; t += WAVE) {
    pthread_t tid[WAVE];
    struct worker w[WAVE];
    unsigned k, i;
    for (k = 0; k < WAVE; k++) {
      memset(&w[k], 0, sizeof w[k]);
      w[k].index = t + k;
      if (pthread_create(&tid[k], NULL, worker_main, &w[k]) != 0)
        fail_msg("pthread_create failed at thread %u", t + k);
    }
    for (k = 0; k < WAVE; k++) {
      pthread_join(tid[k], NULL);
      if (w[k].bad)
        fail_msg("thread %u found a corrupted or missing block", t + k);
      for (i = 0; i < KEEP; i++) {
        if (tu_check(w[k].kept[i], w[k].kept_size[i], w[k].index * 64u + i) != (size_t)-1)
          fail_msg("block left by exited thread %u corrupted", t + k);
        pallet_free(w[k].kept[i]);
      }
    }
  }
}

static void test_thread_churn(void **state)
{
  size_t rss_base, rss_end, pallet_base, pallet_end;
  pallet_stats_t *st = malloc(sizeof *st);
  size_t threads_before;
  (void)state;
  assert_non_null(st);
  /* warm up: the first waves map pallet's chunks and metadata */
  run_waves(0, 400);
  assert_int_equal(pallet_stats_get(st), 0);
  threads_before = st->threads;
  pallet_base = st->mapped + st->metadata;
  rss_base = tu_rss_bytes();
  assert_true(rss_base > 0);
  run_waves(400, THREADS - 400);
  rss_end = tu_rss_bytes();
  assert_int_equal(pallet_stats_get(st), 0);
  pallet_end = st->mapped + st->metadata;
  if (getenv("PL_TEST_VERBOSE") != NULL)
    fprintf(stderr, "rss %zu -> %zu KiB; pallet mapped+metadata %zu -> %zu KiB\n",
            rss_base / 1024, rss_end / 1024, pallet_base / 1024, pallet_end / 1024);
  /* pallet's own mappings (heap and metadata) stay bounded ... */
  if (pallet_end > pallet_base + 64 * MIB)
    fail_msg("pallet's mappings grew from %zu KiB to %zu KiB over %u short threads",
             pallet_base / 1024, pallet_end / 1024, THREADS);
  /* ... and so does the whole process, unless AddressSanitizer's
   * quarantine (of glibc's per-thread allocations) dominates it */
#if !TU_UNDER_ASAN
  if (rss_end > rss_base + 64 * MIB)
    fail_msg("RSS grew from %zu KiB to %zu KiB over %u short threads",
             rss_base / 1024, rss_end / 1024, THREADS);
#endif
  if (st->threads > threads_before)
    fail_msg("%zu thread caches alive after all threads exited (%zu before)",
             st->threads, threads_before);
  assert_int_equal(pallet_heap_check(), 0);
  free(st);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_thread_churn),
  };
  tu_watchdog("thread_churn", 150);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
