/*
 * thread_exit.c — frees and mallocs at thread exit, after pallet's cache
 * for the thread may already be gone: from pthread key destructors (keys
 * created before and after pallet's own, and re-armed so that they run
 * again in a later destructor round) and from C++-style thread_local
 * destructors (__cxa_thread_atexit_impl, what g++ emits).  Each destructor
 * checks and frees blocks its thread allocated, frees a block main
 * allocated, and allocates and frees a mix.  Afterwards: every block seen
 * intact, no thread cache left alive, the heap sound.
 */
#include "testutil.h"

#include <pthread.h>

#define KIB ((size_t)1 << 10)

enum { THREADS = 400, WAVE = 8, PER = 24 };

/* glibc's hook behind C++ thread_local destructors. */
extern int __cxa_thread_atexit_impl(void (*fn)(void *), void *obj, void *dso);
extern void *__dso_handle;

struct bag {
  void *p[PER];
  size_t n[PER];
  uint64_t seed;
  void *from_main;   /* a block main allocated, freed at exit */
  int rounds;        /* destructor rounds still to run */
};

static pthread_key_t early_key, late_key;
static pthread_mutex_t tally_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned bad_blocks, destructor_runs, failed_mallocs;

static void tally(unsigned bad, unsigned failed)
{
  pthread_mutex_lock(&tally_lock);
  bad_blocks += bad;
  failed_mallocs += failed;
  destructor_runs++;
  pthread_mutex_unlock(&tally_lock);
}

static void fill_bag(struct bag *b, uint64_t seed)
{
  int i;
  b->seed = seed;
  for (i = 0; i < PER; i++) {
    b->n[i] = (size_t)((seed + (uint64_t)i * 97) % 3000) + 1;
    if (i == PER - 1)
      b->n[i] = 300 * KIB; /* one large block */
    b->p[i] = pallet_malloc(b->n[i]);
    if (b->p[i] != NULL)
      tu_fill(b->p[i], b->n[i], seed + (uint64_t)i);
  }
}

/* Checks and frees half the bag (or the rest), then allocates and frees
 * a mix: all of it possibly after pallet's per-thread state is gone. */
static void empty_bag(struct bag *b, int half)
{
  unsigned bad = 0, failed = 0;
  int i, from = half ? 0 : PER / 2, to = half ? PER / 2 : PER;
  for (i = from; i < to; i++) {
    if (b->p[i] == NULL) {
      failed++;
      continue;
    }
    if (tu_check(b->p[i], b->n[i], b->seed + (uint64_t)i) != (size_t)-1)
      bad++;
    pallet_free(b->p[i]);
    b->p[i] = NULL;
  }
  for (i = 0; i < 20; i++) {
    size_t n = (size_t)i * 211 + 1;
    void *q = pallet_malloc(n);
    if (q == NULL) {
      failed++;
      continue;
    }
    tu_fill(q, n, 77);
    if (tu_check(q, n, 77) != (size_t)-1)
      bad++;
    pallet_free(q);
  }
  tally(bad, failed);
}

static void key_destructor(void *arg)
{
  struct bag *b = arg;
  pthread_key_t key = b->rounds > 100 ? late_key : early_key;
  int left = b->rounds % 100;
  empty_bag(b, left == 2);
  if (b->from_main != NULL) {
    pallet_free(b->from_main);
    b->from_main = NULL;
  }
  if (left > 1) {
    /* run again in the next round, after other keys' destructors */
    b->rounds--;
    pthread_setspecific(key, b);
  } else {
    pallet_free(b); /* the bag itself is a pallet block */
  }
}

static void tls_destructor(void *arg)
{
  struct bag *b = arg;
  empty_bag(b, 1);
  empty_bag(b, 0);
  pallet_free(b->from_main);
  pallet_free(b);
}

static struct bag *new_bag(uint64_t seed, void *from_main, int rounds)
{
  struct bag *b = pallet_calloc(1, sizeof *b);
  if (b == NULL)
    abort();
  fill_bag(b, seed);
  b->from_main = from_main;
  b->rounds = rounds;
  return b;
}

static void *worker(void *arg)
{
  void **from_main = arg; /* three blocks main allocated */
  uintptr_t id = (uintptr_t)from_main[3];
  pthread_setspecific(early_key, new_bag(id * 3, from_main[0], 2));
  pthread_setspecific(late_key, new_bag(id * 3 + 1, from_main[1], 102));
  if (__cxa_thread_atexit_impl(tls_destructor, new_bag(id * 3 + 2, from_main[2], 0),
                               &__dso_handle) != 0)
    abort();
  return NULL;
}

static void test_exit_destructors(void **state)
{
  static void *args[WAVE][4];
  pallet_stats_t *st = malloc(sizeof *st);
  size_t threads_before;
  unsigned t, k;
  (void)state;
  assert_non_null(st);
  assert_int_equal(pallet_stats_get(st), 0);
  threads_before = st->threads;
  for (t = 0; t < THREADS; t += WAVE) {
    pthread_t tid[WAVE];
    for (k = 0; k < WAVE; k++) {
      int j;
      for (j = 0; j < 3; j++) {
        args[k][j] = pallet_malloc(100 + (size_t)j * 1000);
        assert_non_null(args[k][j]);
      }
      args[k][3] = (void *)(uintptr_t)(t + k);
      assert_int_equal(pthread_create(&tid[k], NULL, worker, args[k]), 0);
    }
    for (k = 0; k < WAVE; k++)
      pthread_join(tid[k], NULL);
  }
  assert_int_equal(bad_blocks, 0);
  assert_int_equal(failed_mallocs, 0);
  /* early key: 2 rounds, late key: 2 rounds, thread_local: 2 bag halves */
  assert_int_equal(destructor_runs, THREADS * 6);
  assert_int_equal(pallet_stats_get(st), 0);
  if (st->threads > threads_before + 1)
    fail_msg("%zu thread caches alive after %u threads exited (%zu before)",
             st->threads, THREADS, threads_before);
  assert_int_equal(pallet_heap_check(), 0);
  free(st);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_exit_destructors),
  };
  /* one key before pallet is used at all, one after */
  if (pthread_key_create(&early_key, key_destructor) != 0)
    return 1;
  pallet_free(pallet_malloc(1));
  if (pthread_key_create(&late_key, key_destructor) != 0)
    return 1;
  tu_watchdog("thread_exit", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
