/*
 * prodcons.c — blocks allocated in one thread and freed in another.
 *
 * usage: bench-prodcons [--quick] [--ops N] [--threads PAIRS]
 *
 * PAIRS (default 2) producer/consumer pairs.  Each producer allocates
 * blocks of random sizes (16 B – 1 KiB), writes a tag into them and pushes
 * them into a lock-free single-producer/single-consumer ring (1024 entries);
 * its consumer pops them, checks the tag and frees them.  When the ring is
 * full (or empty) the waiting side yields the CPU.  ops = blocks passed in
 * total, over all pairs.
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define RING 1024 /* power of two */

struct pair {
  _Alignas(64) _Atomic size_t head; /* written by the producer */
  _Alignas(64) _Atomic size_t tail; /* written by the consumer */
  _Alignas(64) void *slot[RING];
  long long ops;
  uint64_t seed;
};

static void *producer(void *arg) {
  struct pair *q = arg;
  uint64_t rng = q->seed;
  size_t head = 0;
  for (long long i = 0; i < q->ops; i++) {
    size_t n = bench_range(&rng, 16, 1024);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("prodcons", "out of memory");
    memcpy(p, &n, sizeof n);
    p[n - 1] = (unsigned char)n;
    while (head - atomic_load_explicit(&q->tail, memory_order_acquire) ==
           RING)
      sched_yield();
    q->slot[head & (RING - 1)] = p;
    atomic_store_explicit(&q->head, ++head, memory_order_release);
  }
  return NULL;
}

static void *consumer(void *arg) {
  struct pair *q = arg;
  size_t tail = 0;
  for (long long i = 0; i < q->ops; i++) {
    while (atomic_load_explicit(&q->head, memory_order_acquire) == tail)
      sched_yield();
    unsigned char *p = q->slot[tail & (RING - 1)];
    atomic_store_explicit(&q->tail, ++tail, memory_order_release);
    size_t n;
    memcpy(&n, p, sizeof n);
    if (n < 16 || n > 1024 || p[n - 1] != (unsigned char)n)
      bench_die("prodcons", "block contents changed: allocator bug");
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  int pairs = a.threads > 0 ? a.threads : 2;
  long long ops = bench_ops(&a, 6000000);
  struct pair *q = aligned_alloc(64, sizeof *q * (size_t)pairs);
  pthread_t *th = malloc(sizeof *th * 2 * (size_t)pairs);
  if (q == NULL || th == NULL)
    bench_die("prodcons", "out of memory");
  memset(q, 0, sizeof *q * (size_t)pairs);

  double t0 = bench_now();
  for (int i = 0; i < pairs; i++) {
    q[i].ops = ops / pairs;
    q[i].seed = a.seed + 0x1234567ULL * (uint64_t)(i + 1);
    if (pthread_create(&th[2 * i], NULL, producer, &q[i]) != 0 ||
        pthread_create(&th[2 * i + 1], NULL, consumer, &q[i]) != 0)
      bench_die("prodcons", "pthread_create failed");
  }
  for (int i = 0; i < 2 * pairs; i++)
    pthread_join(th[i], NULL);
  double t = bench_now() - t0;

  bench_result("prodcons", ops / pairs * pairs, t, "pairs=%d ring=%d", pairs,
               RING);
  free(th);
  free(q);
  return 0;
}
