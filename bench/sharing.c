/*
 * sharing.c — how often threads that never share a block still share a
 * cache line: the loop of bench-scaling (each thread replaces a random
 * one of its own LIVE blocks of 16-256 B, or MIN-MAX, per operation,
 * first and last byte written), with every line the program touches in
 * a block (its first byte before free, its first and last byte after
 * malloc) noted in a table of line owners.  A touch of a line whose
 * last toucher was another thread is a cross-thread touch: a line that
 * moves between the cores' caches.  An allocator that keeps each
 * thread's blocks on lines (or pages) of their own has none; one whose
 * central lists hand blocks freed by one thread to another mixes the
 * threads' blocks within lines.
 * Not timed and not in the runner; run it under LD_PRELOAD of each
 * allocator (figures in doc/benchmarks.md).  The owner table is updated
 * without locks, so the count is approximate (a race can lose a touch).
 *
 * usage: bench-sharing [--quick] [--ops N] [--threads T] [--seed N] [LIVE | MIN:MAX]
 *
 * T threads (default 2), LIVE blocks each (default 1024) of MIN-MAX
 * bytes (default 16-256), ops (default 10,000,000) split over the
 * threads.  Prints the cross-thread touches per 1000 operations as
 * "per_kop".
 */
#include "bench.h"

#define OWNER_LINES ((size_t)1 << 24) /* lines hashed by address: 16 MiB */

static size_t live = 1024, size_min = 16, size_max = 256;
static unsigned char *owner;

struct share_job {
  pthread_t th;
  long long count;
  uint64_t seed;
  unsigned char id; /* 1 .. T */
  long long cross;  /* cross-thread touches */
  char pad[64];     /* the jobs' counters on lines of their own */
};

static inline void touch(struct share_job *j, const void *p) {
  size_t line = ((uintptr_t)p >> 6) & (OWNER_LINES - 1);
  unsigned char o = __atomic_load_n(&owner[line], __ATOMIC_RELAXED);
  if (o != 0 && o != j->id)
    j->cross++;
  if (o != j->id)
    __atomic_store_n(&owner[line], j->id, __ATOMIC_RELAXED);
}

static void *run(void *arg) {
  struct share_job *j = arg;
  uint64_t rng = j->seed;
  unsigned char **v = malloc(sizeof *v * live);
  if (v == NULL)
    bench_die("sharing", "out of memory");
  for (size_t i = 0; i < live; i++) {
    v[i] = malloc(bench_range(&rng, size_min, size_max));
    if (v[i] == NULL)
      bench_die("sharing", "out of memory");
    v[i][0] = 1;
    touch(j, v[i]);
  }
  for (long long i = 0; i < j->count; i++) {
    uint64_t r = bench_rand(&rng);
    size_t k = (size_t)(r % live), n = size_min + (size_t)((r >> 32) % (size_max - size_min + 1));
    touch(j, v[k]);
    free(v[k]);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("sharing", "out of memory");
    p[0] = (unsigned char)r;
    p[n - 1] = (unsigned char)r;
    touch(j, p);
    touch(j, p + n - 1);
    v[k] = p;
  }
  for (size_t i = 0; i < live; i++)
    free(v[i]);
  free(v);
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse(argc, argv, &a, "[LIVE | MIN:MAX]");
  if (a.pos != NULL) {
    long long n, m = 0;
    int parts = bench_parse_pair(a.pos, &n, &m);
    if (parts == 1 && n >= 1 && n <= 10000000) {
      live = (size_t)n;
    } else if (parts == 2 && n >= 1 && m >= n && m <= (1 << 30)) {
      size_min = (size_t)n;
      size_max = (size_t)m;
    } else {
      bench_usage_exit(argv[0], "[LIVE | MIN:MAX]");
    }
  }
  int t = a.threads > 0 ? a.threads : 2;
  if (t > 255)
    bench_usage_exit(argv[0], "[LIVE | MIN:MAX]");
  long long ops = bench_ops(&a, 10000000) / t * t;
  owner = calloc(OWNER_LINES, 1);
  struct share_job *jobs = calloc((size_t)t, sizeof *jobs);
  if (owner == NULL || jobs == NULL)
    bench_die("sharing", "out of memory");
  double t0 = bench_now();
  for (int i = 0; i < t; i++) {
    jobs[i].count = ops / t;
    jobs[i].seed = a.seed * (uint64_t)(2 * i + 5) | 1;
    jobs[i].id = (unsigned char)(i + 1);
    if (pthread_create(&jobs[i].th, NULL, run, &jobs[i]) != 0)
      bench_die("sharing", "pthread_create failed");
  }
  long long cross = 0;
  for (int i = 0; i < t; i++) {
    pthread_join(jobs[i].th, NULL);
    cross += jobs[i].cross;
  }
  double secs = bench_now() - t0;
  bench_result("sharing", ops, secs, "threads=%d live=%zu sizes=%zu:%zu cross=%lld per_kop=%.3f", t, live,
               size_min, size_max, cross,
               (double)cross * 1000.0 / (double)ops);
  free(jobs);
  free(owner);
  return 0;
}
