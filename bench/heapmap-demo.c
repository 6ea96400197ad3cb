/*
 * heapmap-demo.c — draws pallet's heap at three moments of a fragmenting
 * workload, with pallet_heap_map():
 *   BEFORE   after allocating blocks of mixed sizes (mostly small, a few
 *            large, one huge);
 *   AFTER    after freeing two thirds of them (and the huge one) at random
 *            and allocating blocks of a third size, which cannot reuse the
 *            holes;
 *   TRIMMED  after malloc_trim(0).
 * It goes through the standard names (malloc, free, malloc_trim), so what
 * it draws is what a program sees; it is linked with libpallet, and stops
 * if malloc is not pallet's (a --disable-override build).
 *
 *   usage: heapmap-demo BEFORE.svg AFTER.svg TRIMMED.svg [SEED]
 * Pictures for the documentation: doc/heapmap.md.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pallet.h"

#define NBLOCKS 20000 /* about 16 MiB */

static uint64_t rng_state;

static uint64_t rng(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

/* The first workload's sizes: small classes of several span lengths, and
 * now and then a large block. */
static size_t mixed_size(void) {
  static const size_t sizes[] = {32, 64, 160, 400, 1000, 3000};
  uint64_t r = rng();
  if (r % 1000 == 0) return (size_t)(288 + (r >> 20) % 6 * 128) << 10; /* 288..928 KiB */
  return sizes[(r >> 16) % (sizeof sizes / sizeof sizes[0])];
}

static void report(const char *what) {
  pallet_stats_t st;
  pallet_stats_get(&st);
  printf("%-8s allocated %8.2f MiB  active %8.2f MiB  resident %8.2f MiB  mapped %8.2f MiB\n",
         what, (double)st.allocated / 1048576.0, (double)st.active / 1048576.0,
         (double)st.resident / 1048576.0, (double)st.mapped / 1048576.0);
}

static int draw(const char *path, const char *what) {
  FILE *f = fopen(path, "w");
  if (f == NULL || pallet_heap_map(f) != 0) {
    perror(path);
    return -1;
  }
  if (fclose(f) != 0) {
    perror(path);
    return -1;
  }
  report(what);
  return 0;
}

/* Whether malloc is pallet's: a block of 1 MiB shows in its statistics. */
static int malloc_is_pallet(void) {
  pallet_stats_t a, b;
  pallet_stats_get(&a);
  void *volatile p = malloc((size_t)1 << 20);
  pallet_stats_get(&b);
  free(p);
  return b.allocated >= a.allocated + ((size_t)1 << 20);
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s BEFORE.svg AFTER.svg TRIMMED.svg [SEED]\n", argv[0]);
    return 2;
  }
  rng_state = argc == 5 ? strtoull(argv[4], NULL, 0) : 12345;
  if (rng_state == 0) rng_state = 1;
  if (!malloc_is_pallet()) {
    fprintf(stderr, "%s: malloc is not pallet's (libpallet built with "
                    "--disable-override?)\n", argv[0]);
    return 1;
  }

  static void *blocks[NBLOCKS], *third[NBLOCKS];
  for (size_t i = 0; i < NBLOCKS; i++) {
    size_t n = mixed_size();
    blocks[i] = malloc(n);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], (int)(i & 0xff), n < 64 ? n : 64);
  }
  void *huge = malloc((size_t)10 << 20); /* a mapping of its own */
  if (huge == NULL) return 1;
  memset(huge, 1, 4096);
  if (draw(argv[1], "before") != 0) return 1;
  free(huge);

  /* Free two thirds at random (a shuffle of the indices, first 2/3). */
  static size_t order[NBLOCKS];
  for (size_t i = 0; i < NBLOCKS; i++) order[i] = i;
  for (size_t i = NBLOCKS - 1; i > 0; i--) {
    size_t j = (size_t)(rng() % (i + 1)), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (size_t i = 0; i < NBLOCKS * 2 / 3; i++) {
    free(blocks[order[i]]);
    blocks[order[i]] = NULL;
  }
  /* A third size, in no class used so far: new spans, holes stay. */
  size_t nthird = NBLOCKS / 4;
  for (size_t i = 0; i < nthird; i++) {
    third[i] = malloc(1400);
    if (third[i] == NULL) return 1;
    memset(third[i], 1, 64);
  }
  if (draw(argv[2], "after") != 0) return 1;

  malloc_trim(0);
  if (draw(argv[3], "trimmed") != 0) return 1;

  for (size_t i = 0; i < NBLOCKS; i++) free(blocks[i]);
  for (size_t i = 0; i < nthird; i++) free(third[i]);
  return 0;
}
