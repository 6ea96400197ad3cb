/*
 * servermix.c — a server-like mix: requests of many sizes, half of them
 * handed to another thread, which frees them.
 *
 * usage: bench-servermix [--quick] [--ops N] [--threads T]
 *
 * T worker threads (default 4) form a ring.  Each operation allocates a
 * block whose size follows a server-like spread — 70 % 16–512 B, 22 %
 * 512 B–4 KiB, 7 % 4–32 KiB, 1 % 32–256 KiB — and writes its first and
 * last byte.  Half of the blocks replace a random one of the thread's
 * 4096 live blocks (which is freed); the other half go to the next
 * thread in the ring through a single-producer/single-consumer queue of
 * 4096 entries, and that thread checks and frees them (every 64
 * operations, and whenever its own outgoing queue is full).  So the
 * allocator sees small and big blocks, long- and short-lived ones, and
 * a stream of frees of other threads' blocks.  ops = blocks allocated,
 * over all threads.
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define LIVE 4096
#define QUEUE 4096 /* power of two */
#define TAG 0x5a
#define MAX_THREADS 64

struct worker {
  _Alignas(64) _Atomic size_t head; /* written by the previous thread */
  _Alignas(64) _Atomic size_t tail; /* written by this thread */
  _Alignas(64) unsigned char *queue[QUEUE];
  _Atomic int done;                 /* no longer takes from its queue */
  pthread_t th;
  long long ops;
  uint64_t seed;
  int index;
};

static struct worker *workers;
static int nworkers;

static size_t request_size(uint64_t *rng) {
  uint64_t r = bench_rand(rng);
  unsigned pick = (unsigned)(r % 100);
  r >>= 8;
  if (pick < 70) return 16 + (size_t)(r % 497);
  if (pick < 92) return 512 + (size_t)(r % 3585);
  if (pick < 99) return 4096 + (size_t)(r % 28673);
  return 32768 + (size_t)(r % 229377);
}

/* Frees what the previous thread has handed over so far. */
static void drain(struct worker *w) {
  size_t t = atomic_load_explicit(&w->tail, memory_order_relaxed);
  size_t h = atomic_load_explicit(&w->head, memory_order_acquire);
  for (; t != h; t++) {
    unsigned char *p = w->queue[t & (QUEUE - 1)];
    if (p[0] != TAG)
      bench_die("servermix", "block contents changed: allocator bug");
    free(p);
  }
  atomic_store_explicit(&w->tail, t, memory_order_release);
}

static void *run(void *arg) {
  struct worker *w = arg;
  struct worker *next = &workers[(w->index + 1) % nworkers];
  uint64_t rng = w->seed;
  unsigned char **live = calloc(LIVE, sizeof *live);
  if (live == NULL)
    bench_die("servermix", "out of memory");
  for (long long i = 0; i < w->ops; i++) {
    size_t n = request_size(&rng);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("servermix", "out of memory");
    p[0] = TAG;
    p[n - 1] = (unsigned char)n;
    uint64_t r = bench_rand(&rng);
    if (r & 1) {
      size_t k = (size_t)((r >> 1) % LIVE);
      free(live[k]);
      live[k] = p;
    } else {
      size_t h = atomic_load_explicit(&next->head, memory_order_relaxed);
      while (h - atomic_load_explicit(&next->tail, memory_order_acquire) >= QUEUE &&
             !atomic_load_explicit(&next->done, memory_order_acquire)) {
        drain(w);
        sched_yield();
      }
      if (atomic_load_explicit(&next->done, memory_order_acquire)) {
        free(p); /* the next thread has finished: nobody would free it */
      } else {
        next->queue[h & (QUEUE - 1)] = p;
        atomic_store_explicit(&next->head, h + 1, memory_order_release);
      }
    }
    if ((i & 63) == 0)
      drain(w);
  }
  atomic_store_explicit(&w->done, 1, memory_order_release);
  drain(w);
  for (int k = 0; k < LIVE; k++)
    free(live[k]);
  free(live);
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  nworkers = a.threads > 0 ? a.threads : 4;
  if (nworkers > MAX_THREADS)
    bench_die("servermix", "at most 64 threads");
  long long ops = bench_ops(&a, 2000000);
  workers = aligned_alloc(64, sizeof *workers * (size_t)nworkers);
  if (workers == NULL)
    bench_die("servermix", "out of memory");
  memset(workers, 0, sizeof *workers * (size_t)nworkers);

  double t0 = bench_now();
  for (int i = 0; i < nworkers; i++) {
    workers[i].index = i;
    workers[i].ops = ops / nworkers;
    workers[i].seed = a.seed * (uint64_t)(2 * i + 5) | 1;
    if (pthread_create(&workers[i].th, NULL, run, &workers[i]) != 0)
      bench_die("servermix", "pthread_create failed");
  }
  for (int i = 0; i < nworkers; i++)
    pthread_join(workers[i].th, NULL);
  /* A block handed over just as its receiver finished. */
  for (int i = 0; i < nworkers; i++)
    drain(&workers[i]);
  double secs = bench_now() - t0;

  bench_result("servermix", ops / nworkers * nworkers, secs, "threads=%d", nworkers);
  free(workers);
  return 0;
}
