/*
 * pipeline.c — a ring of stages, each freeing what the one before made.
 *
 * usage: bench-pipeline [--quick] [--ops N] [--threads STAGES]
 *
 * STAGES threads (default 4) stand in a ring, joined by lock-free
 * single-producer/single-consumer queues of 1024 entries; 64 messages a
 * stage circulate.  A stage takes a message from its queue, checks the
 * tag its maker wrote, frees it, and passes on a new message of a
 * random size (16–256 B six times in ten, up to 1 KiB three in ten, up
 * to 4 KiB one in ten) to the next stage, as the stages of a server
 * (parse, handle, reply) hand requests on.  Every free is of another
 * thread's block, and every thread both allocates and frees every size,
 * so each thread cache sees a random walk in each class: over time, a
 * cache that keeps whatever it once needed grows far past the few
 * hundred kilobytes in flight.  A waiting stage yields the CPU.
 * ops = messages handled, over all stages.
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define QUEUE 1024 /* power of two, >= 64 x stages */
#define PER_STAGE 64

struct queue {
  _Alignas(64) _Atomic size_t head; /* written by the stage before */
  _Alignas(64) _Atomic size_t tail; /* written by the stage it feeds */
  _Alignas(64) void *slot[QUEUE];
};

struct stage {
  struct queue *in, *out;
  long long ops;
  uint64_t seed;
  size_t out_head, in_tail; /* this stage's own ends of its queues */
};

static size_t message_size(uint64_t *rng) {
  uint64_t r = bench_rand(rng) % 10;
  if (r < 6)
    return bench_range(rng, 16, 256);
  if (r < 9)
    return bench_range(rng, 257, 1024);
  return bench_range(rng, 1025, 4096);
}

static unsigned char *make_message(uint64_t *rng) {
  size_t n = message_size(rng);
  unsigned char *p = malloc(n);
  if (p == NULL)
    bench_die("pipeline", "out of memory");
  memcpy(p, &n, sizeof n);
  p[n - 1] = (unsigned char)n;
  return p;
}

static void check_message(const unsigned char *p) {
  size_t n;
  memcpy(&n, p, sizeof n);
  if (n < 16 || n > 4096 || p[n - 1] != (unsigned char)n)
    bench_die("pipeline", "block contents changed: allocator bug");
}

static void *run(void *arg) {
  struct stage *s = arg;
  uint64_t rng = s->seed;
  size_t tail = s->in_tail, head = s->out_head;
  for (long long i = 0; i < s->ops; i++) {
    while (atomic_load_explicit(&s->in->head, memory_order_acquire) == tail)
      sched_yield();
    unsigned char *p = s->in->slot[tail & (QUEUE - 1)];
    atomic_store_explicit(&s->in->tail, ++tail, memory_order_release);
    check_message(p);
    free(p);
    unsigned char *m = make_message(&rng);
    while (head - atomic_load_explicit(&s->out->tail, memory_order_acquire) ==
           QUEUE)
      sched_yield();
    s->out->slot[head & (QUEUE - 1)] = m;
    atomic_store_explicit(&s->out->head, ++head, memory_order_release);
  }
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  int n = a.threads > 0 ? a.threads : 4;
  if (n < 2 || n * PER_STAGE > QUEUE)
    bench_die("pipeline", "--threads must be 2 to 16");
  long long ops = bench_ops(&a, 8000000);
  struct queue *q = aligned_alloc(64, sizeof *q * (size_t)n);
  struct stage *st = calloc((size_t)n, sizeof *st);
  pthread_t *th = malloc(sizeof *th * (size_t)n);
  if (q == NULL || st == NULL || th == NULL)
    bench_die("pipeline", "out of memory");
  memset(q, 0, sizeof *q * (size_t)n);
  uint64_t rng = a.seed;
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < PER_STAGE; k++)
      q[i].slot[k] = make_message(&rng);
    atomic_store(&q[i].head, PER_STAGE);
  }

  double t0 = bench_now();
  for (int i = 0; i < n; i++) {
    st[i].in = &q[i];
    st[i].out = &q[(i + 1) % n];
    st[i].out_head = PER_STAGE;
    st[i].ops = ops / n;
    st[i].seed = a.seed + 0x9e3779b9ULL * (uint64_t)(i + 1);
    if (pthread_create(&th[i], NULL, run, &st[i]) != 0)
      bench_die("pipeline", "pthread_create failed");
  }
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  double t = bench_now() - t0;

  /* Every stage took and passed on as many: each queue holds its 64. */
  for (int i = 0; i < n; i++) {
    size_t head = atomic_load(&q[i].head), tail = atomic_load(&q[i].tail);
    if (head - tail != PER_STAGE)
      bench_die("pipeline", "a queue lost messages");
    for (size_t k = tail; k != head; k++) {
      check_message(q[i].slot[k & (QUEUE - 1)]);
      free(q[i].slot[k & (QUEUE - 1)]);
    }
  }
  bench_result("pipeline", ops / n * n, t, "stages=%d queue=%d", n, QUEUE);
  free(th);
  free(st);
  free(q);
  return 0;
}
