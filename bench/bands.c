/*
 * bands.c — single-threaded malloc/free pairs in one size band.
 *
 * usage: bench-bands [--quick] [--ops N] tiny|small|medium|large|huge
 *
 *   tiny    16 B – 128 B       small   128 B – 1 KiB
 *   medium  1 KiB – 32 KiB     large   32 KiB – 256 KiB
 *   huge    256 KiB – 4 MiB
 *
 * A few slots hold live blocks; each operation picks a slot at random,
 * frees its block and puts a fresh block of a random size from the band in
 * its place (one malloc + one free), writing the first 16 bytes and the last
 * byte of the new block.  Sizes and slots come from a fixed pseudo-random
 * sequence, the same for every allocator.  The slots are filled before the
 * clock starts and emptied after it stops.
 */
#include "bench.h"

struct band {
  const char *name;
  size_t lo, hi;
  unsigned slots;
  long long ops;  /* default operation count */
};

static const struct band bands[] = {
    {"tiny", 16, 128, 64, 50000000},
    {"small", 128, 1024, 64, 50000000},
    {"medium", 1024, 32768, 32, 8000000},
    {"large", 32768, 262144, 16, 2000000},
    {"huge", 262144, 4194304, 4, 400000},
};

#define TABLE 4096 /* power of two */

int main(int argc, char **argv) {
  struct bench_args a;
  const struct band *b = NULL;
  static size_t size_tab[TABLE];
  static unsigned slot_tab[TABLE];
  void *slot[64];
  char name[32];

  bench_parse(argc, argv, &a, "tiny|small|medium|large|huge");
  for (size_t i = 0; i < sizeof bands / sizeof bands[0]; i++)
    if (a.pos != NULL && strcmp(a.pos, bands[i].name) == 0)
      b = &bands[i];
  if (b == NULL)
    bench_usage_exit(argv[0], "tiny|small|medium|large|huge");

  long long ops = bench_ops(&a, b->ops);
  uint64_t rng = a.seed;
  for (unsigned i = 0; i < TABLE; i++) {
    size_tab[i] = bench_range(&rng, b->lo, b->hi);
    slot_tab[i] = (unsigned)(bench_rand(&rng) % b->slots);
  }
  for (unsigned i = 0; i < b->slots; i++) {
    slot[i] = malloc(b->lo);
    if (slot[i] == NULL)
      bench_die("bands", "out of memory");
    memset(slot[i], 1, 16);
  }

  double t0 = bench_now();
  for (long long i = 0; i < ops; i++) {
    /* The table index is scrambled a little so that the size and slot
     * sequences do not repeat with the same short period. */
    unsigned k = (unsigned)(i + (i >> 12) * 7) & (TABLE - 1);
    unsigned s = slot_tab[k];
    size_t n = size_tab[(k * 13) & (TABLE - 1)];
    free(slot[s]);
    char *p = malloc(n);
    if (p == NULL)
      bench_die("bands", "out of memory");
    memset(p, (int)i, 16);
    p[n - 1] = (char)i;
    bench_escape(p);
    slot[s] = p;
  }
  double t = bench_now() - t0;

  for (unsigned i = 0; i < b->slots; i++)
    free(slot[i]);
  snprintf(name, sizeof name, "bands-%s", b->name);
  bench_result(name, ops, t, "pairs=%lld lo=%zu hi=%zu slots=%u", ops, b->lo,
               b->hi, b->slots);
  return 0;
}
