/*
 * threadchurn.c — short-lived threads with big working sets: the shape of a
 * server that starts a thread per request (or a pool that retires idle
 * workers), where each thread builds megabytes of state and goes away.
 *
 * usage: bench-threadchurn [--quick] [--ops N] [--threads T] [--seed N]
 *                          [BLOCKS[:MAXSIZE]]
 *
 * T threads run at a time (default 2).  Each allocates BLOCKS blocks
 * (default 2,000) of 16 B-MAXSIZE B (default 64 KiB, so about 64 MiB per
 * thread), writing a byte in every 4 KiB of each, frees about half of them
 * itself and hands the rest back; the main thread joins the wave and frees
 * what was handed back, then starts the next wave.  ops = blocks allocated,
 * over all threads.  An allocator that gives a dead thread's memory back to
 * the kernel at once faults it all in again for the next thread; one that
 * keeps too much grows its peak RSS.
 */
#include "bench.h"

static size_t blocks = 2000, max_size = 65536;

struct churn_job {
  pthread_t th;
  uint64_t seed;
  unsigned char **kept; /* handed back to the joiner */
  size_t nkept;
  uint64_t sum;
};

static void *run(void *arg) {
  struct churn_job *j = arg;
  uint64_t rng = j->seed, sum = 0;
  unsigned char **tmp = malloc(sizeof *tmp * blocks);
  j->kept = malloc(sizeof *j->kept * blocks);
  if (tmp == NULL || j->kept == NULL)
    bench_die("threadchurn", "out of memory");
  size_t ntmp = 0;
  j->nkept = 0;
  for (size_t i = 0; i < blocks; i++) {
    size_t size = bench_range(&rng, 16, max_size);
    unsigned char *p = malloc(size);
    if (p == NULL)
      bench_die("threadchurn", "out of memory");
    for (size_t off = 0; off < size; off += 4096)
      p[off] = (unsigned char)(i + off);
    p[size - 1] = (unsigned char)i;
    if (bench_rand(&rng) & 1)
      j->kept[j->nkept++] = p;
    else
      tmp[ntmp++] = p;
  }
  for (size_t i = 0; i < ntmp; i++) {
    sum += tmp[i][0];
    free(tmp[i]);
  }
  free(tmp);
  j->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse(argc, argv, &a, "[BLOCKS[:MAXSIZE]]");
  if (a.pos != NULL) {
    long long b, m = (long long)max_size;
    int parts = bench_parse_pair(a.pos, &b, &m);
    if (parts == 0 || b < 1 || b > 10000000 || m < 16 || m > (1 << 30))
      bench_usage_exit(argv[0], "[BLOCKS[:MAXSIZE]]");
    blocks = (size_t)b;
    max_size = (size_t)m;
  }
  int t = a.threads > 0 ? a.threads : 2;
  long long ops = bench_ops(&a, 400000);
  long long waves = ops / ((long long)blocks * t);
  if (waves < 1)
    waves = 1;
  struct churn_job *jobs = calloc((size_t)t, sizeof *jobs);
  if (jobs == NULL)
    bench_die("threadchurn", "out of memory");
  uint64_t sum = 0;
  double t0 = bench_now();
  for (long long w = 0; w < waves; w++) {
    for (int i = 0; i < t; i++) {
      jobs[i].seed = a.seed * (uint64_t)(2 * (w * t + i) + 11) | 1;
      if (pthread_create(&jobs[i].th, NULL, run, &jobs[i]) != 0)
        bench_die("threadchurn", "pthread_create failed");
    }
    for (int i = 0; i < t; i++) {
      pthread_join(jobs[i].th, NULL);
      sum += jobs[i].sum;
      for (size_t k = 0; k < jobs[i].nkept; k++) {
        sum += jobs[i].kept[k][0];
        free(jobs[i].kept[k]);
      }
      free(jobs[i].kept);
    }
  }
  double secs = bench_now() - t0;
  free(jobs);
  bench_result("threadchurn", waves * (long long)blocks * t, secs,
               "threads=%d waves=%lld blocks=%zu max_size=%zu checksum=%llu", t, waves, blocks,
               max_size, (unsigned long long)(sum % 100000));
  return 0;
}
