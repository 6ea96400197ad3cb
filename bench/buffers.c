/*
 * buffers.c — threads that churn big buffers (I/O, request and reply
 * buffers of a server): each keeps a few of them live and replaces one
 * at random.
 *
 * usage: bench-buffers [--quick] [--ops N] [--threads T] [--seed N]
 *                      [MINSIZE:MAXSIZE]
 *
 * T threads (default 4) each keep 16 live buffers of random sizes between
 * 32 KiB and 1 MiB (or MINSIZE and MAXSIZE bytes).  Each operation frees
 * one at random and allocates a new one, writing its first and last
 * byte, so that the time is the allocator's, not the page faults' or the
 * memory traffic's.  Blocks this big come from the shared page heap in
 * most allocators, so this is where its lock shows.  ops = buffers
 * allocated, over all threads.
 */
#include "bench.h"

#define LIVE 16

static size_t min_size = (size_t)32 << 10, max_size = (size_t)1 << 20;

static void *run(void *arg) {
  struct bench_job *j = arg;
  uint64_t rng = j->seed, sum = 0;
  unsigned char *buf[LIVE] = {NULL};
  size_t len[LIVE] = {0};
  for (long long i = 0; i < j->count; i++) {
    size_t k = (size_t)(bench_rand(&rng) % LIVE);
    if (buf[k] != NULL) {
      if (buf[k][0] != (unsigned char)len[k] || buf[k][len[k] - 1] != (unsigned char)k)
        bench_die("buffers", "a buffer changed under the program");
      sum += buf[k][0];
      free(buf[k]);
    }
    size_t n = bench_range(&rng, min_size, max_size);
    buf[k] = malloc(n);
    if (buf[k] == NULL)
      bench_die("buffers", "out of memory");
    buf[k][0] = (unsigned char)n;
    buf[k][n - 1] = (unsigned char)k;
    len[k] = n;
  }
  for (size_t k = 0; k < LIVE; k++)
    free(buf[k]);
  j->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse(argc, argv, &a, "[MINSIZE:MAXSIZE]");
  if (a.pos != NULL) {
    long long lo, hi;
    if (bench_parse_pair(a.pos, &lo, &hi) != 2 || lo < 1 || hi < lo || hi > (1LL << 32))
      bench_usage_exit(argv[0], "[MINSIZE:MAXSIZE]");
    min_size = (size_t)lo;
    max_size = (size_t)hi;
  }
  int t = a.threads > 0 ? a.threads : 4;
  long long ops = bench_ops(&a, 800000);
  uint64_t sum;
  double secs = bench_run_jobs("buffers", t, ops / t, a.seed, 11, run, &sum);
  bench_result("buffers", ops / t * t, secs, "threads=%d sizes=%zu-%zu checksum=%llu", t,
               min_size, max_size, (unsigned long long)(sum % 100000));
  return 0;
}
