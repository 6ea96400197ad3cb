/*
 * workingset.c — a random working set of small blocks, single-threaded.
 *
 * usage: bench-workingset [--quick] [--ops N] [small]
 *
 * 4096 live blocks of random sizes (16–512 B, a quarter of them up to
 * 2 KiB; with `small`, 16–256 B) are created up front.  Each operation picks a random block, checks
 * the tag written into it when it was made (so a broken allocator is caught
 * rather than timed), frees it, allocates a new block of a random size in
 * its place and writes the new tag into its first and last bytes; it also
 * reads the head of another random live block, as a program walking its
 * data would.  One operation = one malloc + one free.
 */
#include "bench.h"

#define LIVE 4096

struct blk {
  unsigned char *p;
  size_t n;
};

static int small_only;

static size_t ws_size(uint64_t *rng) {
  uint64_t r = bench_rand(rng);
  if (small_only)
    return 16 + (size_t)((r >> 8) % 241); /* 16 .. 256 */
  if ((r & 3) == 0)
    return 16 + (size_t)((r >> 8) % 2033); /* 16 .. 2048 */
  return 16 + (size_t)((r >> 8) % 497);    /* 16 .. 512 */
}

static void ws_tag(struct blk *b, size_t idx) {
  uint64_t tag = (uint64_t)idx * 0x9e3779b97f4a7c15ULL ^ b->n;
  memcpy(b->p, &tag, 8);
  b->p[b->n - 1] = (unsigned char)tag;
}

static void ws_check(const struct blk *b, size_t idx) {
  uint64_t tag = (uint64_t)idx * 0x9e3779b97f4a7c15ULL ^ b->n, got;
  memcpy(&got, b->p, 8);
  if (got != tag || b->p[b->n - 1] != (unsigned char)tag)
    bench_die("workingset", "block contents changed: allocator bug");
}

int main(int argc, char **argv) {
  struct bench_args a;
  static struct blk live[LIVE];
  uint64_t sum = 0;

  bench_parse(argc, argv, &a, "[small]");
  if (a.pos != NULL && strcmp(a.pos, "small") != 0)
    bench_usage_exit(argv[0], "[small]");
  small_only = a.pos != NULL;
  long long ops = bench_ops(&a, 16000000);
  uint64_t rng = a.seed;

  for (size_t i = 0; i < LIVE; i++) {
    live[i].n = ws_size(&rng);
    live[i].p = malloc(live[i].n);
    if (live[i].p == NULL)
      bench_die("workingset", "out of memory");
    ws_tag(&live[i], i);
  }

  double t0 = bench_now();
  for (long long i = 0; i < ops; i++) {
    uint64_t r = bench_rand(&rng);
    size_t k = (size_t)(r % LIVE);
    size_t other = (size_t)((r >> 32) % LIVE);
    ws_check(&live[k], k);
    free(live[k].p);
    live[k].n = ws_size(&rng);
    live[k].p = malloc(live[k].n);
    if (live[k].p == NULL)
      bench_die("workingset", "out of memory");
    ws_tag(&live[k], k);
    sum += live[other].p[0];
  }
  double t = bench_now() - t0;

  for (size_t i = 0; i < LIVE; i++) {
    ws_check(&live[i], i);
    free(live[i].p);
  }
  bench_result(small_only ? "workingset-small" : "workingset", ops, t, "pairs=%lld live=%d checksum=%llu", ops,
               LIVE, (unsigned long long)(sum & 0xffff));
  return 0;
}
