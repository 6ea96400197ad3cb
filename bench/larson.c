/*
 * larson.c — a Larson-style server: threads that come and go replace
 * blocks in slots shared by all of them.
 *
 * usage: bench-larson [--quick] [--ops N] [--threads T]
 *
 * T worker threads (default 4) are alive at any time.  There are 1000 slots
 * per worker, shared: each operation picks a random slot, allocates a new
 * block of a random size (16–512 B), tags it, swaps it into the slot with an
 * atomic exchange and frees the block it took out after checking its tag —
 * usually a block another thread, often one that has exited, allocated.
 * Each worker lives for a fixed number of operations and then exits; the
 * main thread joins the oldest worker and starts a new one in its place,
 * until 10*T workers have lived.  ops = replacements over all workers.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

#define SLOTS_PER_THREAD 1000

static _Atomic(unsigned char *) *slots;
static size_t nslots;

struct worker {
  pthread_t th;
  long long ops;
  uint64_t seed;
};

static void tag(unsigned char *p, size_t n) {
  memcpy(p, &n, sizeof n);
  p[n - 1] = (unsigned char)(n * 7);
}

static void check_free(unsigned char *p) {
  size_t n;
  if (p == NULL)
    return;
  memcpy(&n, p, sizeof n);
  if (n < 16 || n > 512 || p[n - 1] != (unsigned char)(n * 7))
    bench_die("larson", "block contents changed: allocator bug");
  free(p);
}

static void *work(void *arg) {
  struct worker *w = arg;
  uint64_t rng = w->seed;
  for (long long i = 0; i < w->ops; i++) {
    uint64_t r = bench_rand(&rng);
    size_t k = (size_t)(r % nslots);
    size_t n = 16 + (size_t)((r >> 32) % 497);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("larson", "out of memory");
    tag(p, n);
    check_free(atomic_exchange_explicit(&slots[k], p, memory_order_acq_rel));
  }
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  int t = a.threads > 0 ? a.threads : 4;
  int lives = 10 * t;
  long long ops = bench_ops(&a, 8000000);
  long long per = ops / lives;
  if (per < 1)
    per = 1;
  uint64_t rng = a.seed;

  nslots = (size_t)t * SLOTS_PER_THREAD;
  slots = calloc(nslots, sizeof *slots);
  struct worker *w = calloc((size_t)lives, sizeof *w);
  if (slots == NULL || w == NULL)
    bench_die("larson", "out of memory");
  for (size_t i = 0; i < nslots; i++) {
    size_t n = bench_range(&rng, 16, 512);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("larson", "out of memory");
    tag(p, n);
    atomic_store(&slots[i], p);
  }

  double t0 = bench_now();
  int started = 0;
  for (; started < t; started++) {
    w[started].ops = per;
    w[started].seed = bench_rand(&rng) | 1;
    if (pthread_create(&w[started].th, NULL, work, &w[started]) != 0)
      bench_die("larson", "pthread_create failed");
  }
  for (int j = 0; j < lives; j++) {
    pthread_join(w[j].th, NULL);
    if (started < lives) {
      w[started].ops = per;
      w[started].seed = bench_rand(&rng) | 1;
      if (pthread_create(&w[started].th, NULL, work, &w[started]) != 0)
        bench_die("larson", "pthread_create failed");
      started++;
    }
  }
  double secs = bench_now() - t0;

  for (size_t i = 0; i < nslots; i++)
    check_free(atomic_load(&slots[i]));
  bench_result("larson", per * lives, secs, "threads=%d lives=%d slots=%zu",
               t, lives, nslots);
  free(w);
  free(slots);
  return 0;
}
