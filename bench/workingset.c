/*
 * workingset.c — a random working set of small blocks, single-threaded.
 *
 * usage: bench-workingset [--quick] [--ops N] [small|calloc|realloc]
 *
 * 4096 live blocks of random sizes (16–512 B, a quarter of them up to
 * 2 KiB; with `small`, `calloc` or `realloc`, 16–256 B) are created up
 * front.  Each operation picks a random block, checks the tag written into
 * it when it was made (so a broken allocator is caught rather than timed),
 * frees it, allocates a new block of a random size in its place and writes
 * the new tag into its first and last bytes; it also reads the head of
 * another random live block, as a program walking its data would.  One
 * operation = one malloc + one free.  With `calloc` the new block comes
 * from calloc (its first 8 bytes and last byte are checked to be zero);
 * with `realloc` it is made with malloc at half its size, tagged, and
 * grown to its size with realloc (the tag is checked): one operation is
 * then malloc + realloc + free.
 */
#include "bench.h"

#define LIVE 4096

struct blk {
  unsigned char *p;
  size_t n;
};

enum { MIXED, SMALL, CALLOC, REALLOC };
static int mode;
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

/* A new block of b->n bytes for slot idx, made the way the mode says. */
static unsigned char *ws_alloc(struct blk *b, size_t idx) {
  uint64_t got, zero = 0;
  switch (mode) {
    case CALLOC:
      b->p = calloc(1, b->n);
      if (b->p != NULL && (memcmp(b->p, &zero, 8) != 0 || b->p[b->n - 1] != 0))
        bench_die("workingset", "calloc returned a block that is not zero");
      return b->p;
    case REALLOC: {
      size_t n = b->n;
      b->n = n / 2;
      b->p = malloc(b->n);
      if (b->p == NULL)
        return NULL;
      ws_tag(b, idx);
      uint64_t head;
      memcpy(&head, b->p, 8);
      b->n = n;
      b->p = realloc(b->p, n);
      if (b->p != NULL && (memcpy(&got, b->p, 8), got != head))
        bench_die("workingset", "realloc lost the block's contents");
      return b->p;
    }
    default:
      return b->p = malloc(b->n);
  }
}

int main(int argc, char **argv) {
  struct bench_args a;
  static struct blk live[LIVE];
  uint64_t sum = 0;

  static const char *const modes[] = {"", "small", "calloc", "realloc"};
  static const char *const names[] = {"workingset", "workingset-small", "workingset-calloc",
                                      "workingset-realloc"};
  bench_parse(argc, argv, &a, "[small|calloc|realloc]");
  if (a.pos != NULL) {
    for (mode = SMALL; mode <= REALLOC && strcmp(a.pos, modes[mode]) != 0; mode++)
      ;
    if (mode > REALLOC)
      bench_usage_exit(argv[0], "[small|calloc|realloc]");
  }
  small_only = mode != MIXED;
  long long ops = bench_ops(&a, 16000000);
  uint64_t rng = a.seed;

  for (size_t i = 0; i < LIVE; i++) {
    live[i].n = ws_size(&rng);
    if (ws_alloc(&live[i], i) == NULL)
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
    if (ws_alloc(&live[k], k) == NULL)
      bench_die("workingset", "out of memory");
    ws_tag(&live[k], k);
    sum += live[other].p[0];
  }
  double t = bench_now() - t0;

  for (size_t i = 0; i < LIVE; i++) {
    ws_check(&live[i], i);
    free(live[i].p);
  }
  bench_result(names[mode], ops, t, "pairs=%lld live=%d checksum=%llu", ops,
               LIVE, (unsigned long long)(sum & 0xffff));
  return 0;
}
