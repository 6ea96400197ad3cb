/*
 * footprint.c — memory given back after a burst, and thread churn.
 *
 * usage: bench-footprint burst-threads|burst-self|burst-alive|churn
 *
 *   burst-threads  4 threads each allocate and free 256 MiB of blocks of
 *                  16 B - 32 KiB (at most 20,000 live per thread) and exit;
 *                  then 3 s of light activity (one malloc + free of
 *                  100-150 B every 10 ms) on the main thread; then
 *                  malloc_trim(0).
 *   burst-self     the same burst done by the main thread itself.
 *   burst-alive    as burst-threads, but the 4 threads stay alive, blocked
 *                  (on a barrier), until the measures are taken: what
 *                  their caches keep.
 *   churn          100,000 short-lived threads, 8 at a time, each
 *                  allocating and freeing 64 blocks.
 * Prints RSS (from /proc/self/statm) at each step and the growth over the
 * start, as one result line.  Not timed: run it under LD_PRELOAD of each
 * allocator and compare the figures.
 */
#include "bench.h"

#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

static long rss_kib(void) {
  long a = 0, b = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &a, &b) != 2) b = 0;
  fclose(f);
  return b * (sysconf(_SC_PAGESIZE) / 1024);
}

enum { KEEP = 20000 };

static pthread_barrier_t hold_barrier;
static int hold_threads;

static void *burst(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  void **keep = calloc(KEEP, sizeof *keep);
  size_t total = 0;
  int k = 0;
  if (keep == NULL) bench_die("footprint", "out of memory");
  while (total < ((size_t)256 << 20)) {
    uint64_t r = bench_rand(&rng);
    size_t n = 16 + (size_t)(r >> 8) % ((r & 1) ? 512 : 32768);
    char *p = malloc(n);
    if (p == NULL) bench_die("footprint", "out of memory");
    memset(p, 1, n);
    total += n;
    free(keep[k]);
    keep[k] = p;
    k = (k + 1) % KEEP;
  }
  for (int i = 0; i < KEEP; i++) free(keep[i]);
  free(keep);
  if (hold_threads) {
    pthread_barrier_wait(&hold_barrier); /* burst done */
    pthread_barrier_wait(&hold_barrier); /* measures taken */
  }
  return NULL;
}

static void *short_lived(void *arg) {
  (void)arg;
  void *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = malloc(16 + (size_t)i * 61);
    if (p[i] == NULL) bench_die("footprint", "out of memory");
    memset(p[i], 2, 16);
  }
  for (int i = 0; i < 64; i++) free(p[i]);
  return NULL;
}

static void light_activity(void) {
  for (int i = 0; i < 300; i++) {
    char *volatile p = malloc(100 + (size_t)(i % 50));
    if (p == NULL) bench_die("footprint", "out of memory");
    p[0] = (char)i;
    free(p);
    usleep(10000);
  }
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  long start = rss_kib();
  if (strcmp(mode, "burst-threads") == 0 || strcmp(mode, "burst-self") == 0 ||
      strcmp(mode, "burst-alive") == 0) {
    pthread_t t[4];
    hold_threads = strcmp(mode, "burst-alive") == 0;
    if (hold_threads) pthread_barrier_init(&hold_barrier, NULL, 5);
    if (strcmp(mode, "burst-self") != 0) {
      for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, burst, (void *)(uintptr_t)(i + 1)) != 0)
          bench_die("footprint", "pthread_create failed");
      if (hold_threads)
        pthread_barrier_wait(&hold_barrier);
      else
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    } else {
      for (int i = 1; i <= 4; i++) burst((void *)(uintptr_t)i);
    }
    long after = rss_kib();
    light_activity();
    long light = rss_kib();
    malloc_trim(0);
    long trimmed = rss_kib();
    printf("result name=footprint-%s start_kib=%ld after_burst_kib=%ld after_light_kib=%ld "
           "light_growth_kib=%ld after_trim_kib=%ld trim_growth_kib=%ld\n",
           mode, start, after, light, light - start, trimmed, trimmed - start);
    if (hold_threads) {
      pthread_barrier_wait(&hold_barrier);
      for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    return 0;
  }
  if (strcmp(mode, "churn") == 0) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, short_lived, NULL);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    long base = rss_kib();
    for (int w = 0; w < 100000 / 8; w++) {
      for (int i = 0; i < 8; i++)
        if (pthread_create(&t[i], NULL, short_lived, NULL) != 0)
          bench_die("footprint", "pthread_create failed");
      for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    }
    long end = rss_kib();
    printf("result name=footprint-churn threads=100000 first_wave_kib=%ld end_kib=%ld growth_kib=%ld\n",
           base, end, end - base);
    return 0;
  }
  fprintf(stderr, "usage: %s burst-threads|burst-self|burst-alive|churn\n", argv[0]);
  return 2;
}
