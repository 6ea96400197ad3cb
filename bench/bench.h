/*
 * bench.h — shared helpers for the pallet benchmark programs.
 *
 * Every benchmark is an ordinary program that uses the standard malloc
 * family, so it runs unchanged under LD_PRELOAD of any allocator.  Each one
 * prints exactly one machine-readable line on stdout:
 *
 *   result name=<bench> ops=<n> seconds=<wall of the timed part> key=value...
 *
 * Common options (parsed by bench_parse):
 *   --quick        fewer operations (also: environment BENCH_QUICK=1)
 *   --ops N        exact number of operations (overrides --quick)
 *   --threads N    thread count, for the programs that use threads
 *   --seed N       random seed (default fixed, so every allocator sees the
 *                  same sequence of requests)
 * plus at most one positional argument (e.g. the size band).
 */
#ifndef PALLET_BENCH_H
#define PALLET_BENCH_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

struct bench_args {
  int quick;
  long long ops;       /* 0: use the program's default */
  int threads;         /* 0: use the program's default */
  uint64_t seed;
  const char *pos;     /* positional argument or NULL */
};

static inline void bench_usage_exit(const char *prog, const char *extra) {
  fprintf(stderr,
          "usage: %s [--quick] [--ops N] [--threads N] [--seed N] %s\n",
          prog, extra ? extra : "");
  exit(2);
}

static inline void bench_parse(int argc, char **argv, struct bench_args *a,
                               const char *extra_usage) {
  const char *q = getenv("BENCH_QUICK");
  memset(a, 0, sizeof *a);
  a->seed = 0x9e3779b97f4a7c15ULL;
  a->quick = (q != NULL && q[0] != '\0' && q[0] != '0');
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      a->quick = 1;
    } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
      a->ops = strtoll(argv[++i], NULL, 0);
      if (a->ops <= 0)
        bench_usage_exit(argv[0], extra_usage);
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      a->threads = atoi(argv[++i]);
      if (a->threads <= 0 || a->threads > 1024)
        bench_usage_exit(argv[0], extra_usage);
    } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      a->seed = strtoull(argv[++i], NULL, 0) | 1;
    } else if (argv[i][0] == '-' || a->pos != NULL) {
      bench_usage_exit(argv[0], extra_usage);
    } else {
      a->pos = argv[i];
    }
  }
}

/* bench_parse for a program that takes no positional argument. */
static inline void bench_parse_options(int argc, char **argv,
                                       struct bench_args *a) {
  bench_parse(argc, argv, a, "");
  if (a->pos != NULL)
    bench_usage_exit(argv[0], "");
}

/* A positional argument "N" or "N:M" (decimal): the number of parts
 * read (1 or 2, *m left alone for 1), or 0 if s is neither form. */
static inline int bench_parse_pair(const char *s, long long *n, long long *m) {
  char *end;
  *n = strtoll(s, &end, 10);
  if (end == s)
    return 0;
  if (*end == '\0')
    return 1;
  if (*end != ':')
    return 0;
  const char *second = end + 1;
  *m = strtoll(second, &end, 10);
  return end != second && *end == '\0' ? 2 : 0;
}

/* Operations to run: --ops wins, else default (divided by 4 when quick). */
static inline long long bench_ops(const struct bench_args *a,
                                  long long dflt) {
  if (a->ops > 0)
    return a->ops;
  if (a->quick) {
    long long q = dflt / 4;
    return q > 0 ? q : 1;
  }
  return dflt;
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A small, fast, deterministic generator (xorshift64*). */
static inline uint64_t bench_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* A value in [lo, hi] (inclusive). */
static inline size_t bench_range(uint64_t *s, size_t lo, size_t hi) {
  return lo + (size_t)(bench_rand(s) % (uint64_t)(hi - lo + 1));
}

/* Make the compiler believe p escapes, so that a malloc/free pair is not
 * optimised away and writes into the block are kept. */
static inline void bench_escape(void *p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

/* A field of /proc/self/status in KiB (VmRSS, VmHWM, ...), -1 if absent. */
static inline long bench_status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t n = strlen(field);
  long v = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, field, n) == 0 && line[n] == ':') {
      v = strtol(line + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static inline double bench_tv(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* Prints the result line: name, ops, seconds, then extra "k=v" pairs given
 * as a printf format (may be NULL). */
static inline void bench_result(const char *name, long long ops,
                                double seconds, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void bench_result(const char *name, long long ops,
                                double seconds, const char *fmt, ...) {
  printf("result name=%s ops=%lld seconds=%.6f ns_per_op=%.2f", name, ops,
         seconds, ops > 0 ? seconds * 1e9 / (double)ops : 0.0);
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    putchar(' ');
    vprintf(fmt, ap);
    va_end(ap);
  }
  putchar('\n');
  fflush(stdout);
}

static inline void bench_die(const char *name, const char *what) {
  fprintf(stderr, "%s: %s\n", name, what);
  abort();
}

/* Worker threads: each runs fn on its job, which says how much to do
 * (count: operations or rounds, as the program means it) and with which
 * seed, and leaves a checksum in sum. */
struct bench_job {
  pthread_t th;
  long long count;
  uint64_t seed;
  uint64_t sum;
};

/* Runs fn on t threads, job i with count and the seed seed * (2 i + salt)
 * | 1, and waits for them all.  Returns the wall time from before the
 * first start to after the last join; *sum is the jobs' sums added. */
static inline double bench_run_jobs(const char *name, int t, long long count, uint64_t seed,
                                    unsigned salt, void *(*fn)(void *), uint64_t *sum) {
  struct bench_job *j = (struct bench_job *)calloc((size_t)t, sizeof *j);
  if (j == NULL)
    bench_die(name, "out of memory");
  double t0 = bench_now();
  for (int i = 0; i < t; i++) {
    j[i].count = count;
    j[i].seed = seed * (uint64_t)(2 * i + salt) | 1;
    if (pthread_create(&j[i].th, NULL, fn, &j[i]) != 0)
      bench_die(name, "pthread_create failed");
  }
  *sum = 0;
  for (int i = 0; i < t; i++) {
    pthread_join(j[i].th, NULL);
    *sum += j[i].sum;
  }
  double secs = bench_now() - t0;
  free(j);
  return secs;
}

#endif
