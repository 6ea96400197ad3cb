/*
 * thread_xfree.c — cross-thread frees through the pallet_ API: producers
 * allocate blocks of mixed sizes, stamp each with its own pattern and hand
 * them to consumers through a queue; consumers check every byte and free
 * them (so nearly every free is of a block another thread allocated).
 * Also: a thread that only frees (blocks main allocated), and one that
 * only allocates for main to free.  Ends with pallet_heap_check().
 */
#include "testutil.h"

#include <pthread.h>

#define KIB ((size_t)1 << 10)

enum { PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 60000, QCAP = 4096 };

struct item {
  unsigned char *p;
  size_t n;
  uint64_t seed;
};

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  struct item slot[QCAP];
  size_t head, tail, count;
  int producers_left;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
        PTHREAD_COND_INITIALIZER, { { NULL, 0, 0 } }, 0, 0, 0, PRODUCERS };

static volatile size_t corrupt_blocks, checked_blocks;
static pthread_mutex_t tally = PTHREAD_MUTEX_INITIALIZER;

static uint64_t xorshift(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Mostly small sizes, some medium, a few large. */
static size_t pick_size(uint64_t *rng)
{
  uint64_t r = xorshift(rng);
  switch (r % 16) {
  case 0: return (size_t)(r >> 8) % (64 * KIB) + 1;
  case 1: return (size_t)(r >> 8) % 2048 + 1024;
  default: return (size_t)(r >> 8) % 512;
  }
}

static void *producer(void *arg)
{
  uint64_t id = (uint64_t)(uintptr_t)arg, rng = id * 7919 + 1;
  int i;
  for (i = 0; i < PER_PRODUCER; i++) {
    struct item it;
    it.n = pick_size(&rng);
    if (i % 5000 == 4999)
      it.n = 600 * KIB + (size_t)i; /* the occasional large block */
    it.seed = (id << 32) | (uint64_t)i;
    it.p = pallet_malloc(it.n);
    if (it.p == NULL) {
      fprintf(stderr, "producer %llu: malloc(%zu) failed\n",
              (unsigned long long)id, it.n);
      abort();
    }
    tu_fill(it.p, it.n, it.seed);
    pthread_mutex_lock(&q.lock);
    while (q.count == QCAP)
      pthread_cond_wait(&q.not_full, &q.lock);
    q.slot[q.tail] = it;
    q.tail = (q.tail + 1) % QCAP;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
    /* producers also churn their own cache */
    if (i % 7 == 0) {
      void *t = pallet_malloc(it.n / 2 + 1);
      if (t == NULL)
        abort();
      pallet_free(t);
    }
  }
  pthread_mutex_lock(&q.lock);
  q.producers_left--;
  pthread_cond_broadcast(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
  return NULL;
}

static void *consumer(void *arg)
{
  size_t bad = 0, done = 0;
  (void)arg;
  for (;;) {
    struct item it;
    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && q.producers_left > 0)
      pthread_cond_wait(&q.not_empty, &q.lock);
    if (q.count == 0) {
      pthread_mutex_unlock(&q.lock);
      break;
    }
    it = q.slot[q.head];
    q.head = (q.head + 1) % QCAP;
    q.count--;
    pthread_cond_signal(&q.not_full);
    pthread_mutex_unlock(&q.lock);
    if (pallet_malloc_usable_size(it.p) < it.n || tu_check(it.p, it.n, it.seed) != (size_t)-1) {
      if (bad++ < 5)
        fprintf(stderr, "block %p (%zu bytes, seed %#llx) corrupted\n",
                (void *)it.p, it.n, (unsigned long long)it.seed);
    }
    pallet_free(it.p);
    done++;
  }
  pthread_mutex_lock(&tally);
  corrupt_blocks += bad;
  checked_blocks += done;
  pthread_mutex_unlock(&tally);
  return NULL;
}

static void test_producer_consumer(void **state)
{
  pthread_t p[PRODUCERS], c[CONSUMERS];
  int i;
  (void)state;
  for (i = 0; i < CONSUMERS; i++)
    assert_int_equal(pthread_create(&c[i], NULL, consumer, NULL), 0);
  for (i = 0; i < PRODUCERS; i++)
    assert_int_equal(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)(i + 1)), 0);
  for (i = 0; i < PRODUCERS; i++)
    pthread_join(p[i], NULL);
  for (i = 0; i < CONSUMERS; i++)
    pthread_join(c[i], NULL);
  assert_int_equal(corrupt_blocks, 0);
  assert_int_equal(checked_blocks, (size_t)PRODUCERS * PER_PRODUCER);
  assert_int_equal(pallet_heap_check(), 0);
}

/* ---- a thread that only frees, a thread that only allocates ---------- */

enum { NBLOCKS = 50000 };
static void *blocks[NBLOCKS];
static size_t block_size[NBLOCKS];

static void *only_frees(void *arg)
{
  size_t i, bad = 0;
  (void)arg;
  for (i = 0; i < NBLOCKS; i++) {
    if (tu_check(blocks[i], block_size[i], i) != (size_t)-1)
      bad++;
    pallet_free(blocks[i]);
    blocks[i] = NULL;
  }
  return (void *)bad;
}

static void *only_allocates(void *arg)
{
  size_t i;
  uint64_t rng = 99;
  (void)arg;
  for (i = 0; i < NBLOCKS; i++) {
    block_size[i] = pick_size(&rng);
    blocks[i] = pallet_malloc(block_size[i]);
    if (blocks[i] == NULL)
      abort();
    tu_fill(blocks[i], block_size[i], i + 5);
  }
  return NULL;
}

static void test_thread_only_frees(void **state)
{
  pthread_t t;
  void *bad;
  size_t i;
  uint64_t rng = 12345;
  int round;
  (void)state;
  for (round = 0; round < 3; round++) {
    for (i = 0; i < NBLOCKS; i++) {
      block_size[i] = pick_size(&rng);
      blocks[i] = pallet_malloc(block_size[i]);
      assert_non_null(blocks[i]);
      tu_fill(blocks[i], block_size[i], i);
    }
    assert_int_equal(pthread_create(&t, NULL, only_frees, NULL), 0);
    pthread_join(t, &bad);
    assert_int_equal((size_t)bad, 0);
  }
  /* main can still allocate everything back */
  for (i = 0; i < NBLOCKS; i++) {
    blocks[i] = pallet_malloc(block_size[i]);
    assert_non_null(blocks[i]);
    tu_fill(blocks[i], block_size[i], i);
  }
  for (i = 0; i < NBLOCKS; i++) {
    assert_true(tu_check(blocks[i], block_size[i], i) == (size_t)-1);
    pallet_free(blocks[i]);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_thread_only_allocates(void **state)
{
  pthread_t t;
  size_t i;
  (void)state;
  assert_int_equal(pthread_create(&t, NULL, only_allocates, NULL), 0);
  pthread_join(t, NULL);
  /* the thread is gone; its blocks are main's to check and free */
  for (i = 0; i < NBLOCKS; i++) {
    if (tu_check(blocks[i], block_size[i], i + 5) != (size_t)-1)
      fail_msg("block %zu of an exited thread is corrupted", i);
    pallet_free(blocks[i]);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_producer_consumer),
    cmocka_unit_test(test_thread_only_frees),
    cmocka_unit_test(test_thread_only_allocates),
  };
  tu_watchdog("thread_xfree", 120);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
