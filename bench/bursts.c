/*
 * bursts.c — threads that allocate a batch of blocks, then free all of it,
 * round after round (the shape of Hoard's "threadtest").
 *
 * usage: bench-bursts [--quick] [--ops N] [--threads T] [--seed N]
 *                     [BATCH[:MAXSIZE | :MINSIZE-MAXSIZE]]
 *
 * T threads (default 4) each run rounds: allocate BATCH blocks (default
 * 10,000) of 16–128 B (1–MAXSIZE B, or MINSIZE–MAXSIZE B, if given:
 * 16:1000-1000 is rounds of 16 blocks of 1000 B), write the first byte of
 * each, then check those bytes and free the blocks in the order they were
 * made.  ops = blocks allocated, over all threads.  A thread cache that holds less than a
 * batch sends most blocks through its central lists twice a round.
 */
#include "bench.h"

static size_t batch = 10000, min_size = 16, max_size = 128;

static void *run(void *arg) {
  struct bench_job *j = arg; /* count: rounds */
  uint64_t rng = j->seed, sum = 0;
  unsigned char **v = malloc(sizeof *v * batch);
  if (v == NULL)
    bench_die("bursts", "out of memory");
  for (long long r = 0; r < j->count; r++) {
    for (size_t i = 0; i < batch; i++) {
      v[i] = malloc(bench_range(&rng, min_size, max_size));
      if (v[i] == NULL)
        bench_die("bursts", "out of memory");
      v[i][0] = (unsigned char)i;
    }
    for (size_t i = 0; i < batch; i++) {
      if (v[i][0] != (unsigned char)i)
        bench_die("bursts", "a block changed under the program");
      sum += v[i][0];
      free(v[i]);
    }
  }
  free(v);
  j->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse(argc, argv, &a, "[BATCH[:MAXSIZE | :MINSIZE-MAXSIZE]]");
  if (a.pos != NULL) {
    long long b, lo = 1, m;
    int parts = bench_parse_pair(a.pos, &b, &m), used = 0;
    if (parts == 0 && sscanf(a.pos, "%lld:%lld-%lld%n", &b, &lo, &m, &used) == 3 &&
        a.pos[used] == '\0')
      parts = 2;
    if (parts == 0 || b < 1 || b > 10000000 ||
        (parts == 2 && (lo < 1 || m < lo || m > (1 << 30))))
      bench_usage_exit(argv[0], "[BATCH[:MAXSIZE | :MINSIZE-MAXSIZE]]");
    batch = (size_t)b;
    if (parts == 2) {
      min_size = (size_t)lo;
      max_size = (size_t)m;
    }
  }
  int t = a.threads > 0 ? a.threads : 4;
  long long ops = bench_ops(&a, 32000000);
  long long rounds = ops / ((long long)batch * t);
  if (rounds < 1)
    rounds = 1;
  uint64_t sum;
  double secs = bench_run_jobs("bursts", t, rounds, a.seed, 7, run, &sum);
  bench_result("bursts", rounds * (long long)batch * t, secs,
               "threads=%d batch=%zu sizes=%zu-%zu checksum=%llu", t, batch, min_size, max_size,
               (unsigned long long)(sum % 100000));
  return 0;
}
