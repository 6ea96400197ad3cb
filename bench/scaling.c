/*
 * scaling.c — the same total work on 1, 2, 4 or 8 threads.
 *
 * usage: bench-scaling [--quick] [--ops N] --threads T [MIN:MAX]
 *
 * A fixed number of operations is split evenly over T threads.  Each
 * thread keeps its own working set of 1024 blocks of random sizes
 * (MIN–MAX bytes, 16–256 B by default) and replaces a random one per
 * operation (one malloc + one free, first and last byte written).  On a
 * machine with C cores an allocator that scales keeps the wall time near
 * 1/min(T, C) of the one-thread time; one that serialises on a lock does
 * not.
 */
#include "bench.h"

#define LIVE 1024

static size_t size_min = 16, size_max = 256;

static void *run(void *arg) {
  struct bench_job *j = arg;
  uint64_t rng = j->seed, sum = 0;
  unsigned char **live = malloc(sizeof *live * LIVE);
  if (live == NULL)
    bench_die("scaling", "out of memory");
  for (int i = 0; i < LIVE; i++) {
    live[i] = malloc(bench_range(&rng, size_min, size_max));
    if (live[i] == NULL)
      bench_die("scaling", "out of memory");
    live[i][0] = 1;
  }
  for (long long i = 0; i < j->count; i++) {
    uint64_t r = bench_rand(&rng);
    size_t k = (size_t)(r % LIVE);
    size_t n = size_min + (size_t)((r >> 32) % (size_max - size_min + 1));
    sum += live[k][0];
    free(live[k]);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("scaling", "out of memory");
    p[0] = (unsigned char)r;
    p[n - 1] = (unsigned char)r;
    live[k] = p;
  }
  for (int i = 0; i < LIVE; i++)
    free(live[i]);
  free(live);
  j->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  char name[32];
  bench_parse(argc, argv, &a, "[MIN:MAX]");
  if (a.pos != NULL) {
    long long lo, hi;
    if (bench_parse_pair(a.pos, &lo, &hi) != 2 || lo < 1 || hi < lo || hi > (1 << 30))
      bench_usage_exit(argv[0], "[MIN:MAX]");
    size_min = (size_t)lo;
    size_max = (size_t)hi;
  }
  int t = a.threads > 0 ? a.threads : 1;
  long long ops = bench_ops(&a, 40000000);
  uint64_t sum;
  double secs = bench_run_jobs("scaling", t, ops / t, a.seed, 3, run, &sum);

  snprintf(name, sizeof name, "scaling-%d", t);
  bench_result(name, ops / t * t, secs, "threads=%d sizes=%zu:%zu checksum=%llu", t, size_min,
               size_max, (unsigned long long)(sum & 0xffff));
  return 0;
}
