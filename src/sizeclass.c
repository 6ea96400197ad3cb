/*
 * sizeclass.c — builds the size-class tables (see sizeclass.h).
 */
#include "sizeclass.h"

pl_class_info_t pl_class_info[PL_NCLASSES + 1];
uint8_t pl_class_lookup[(PL_SMALL_LOOKUP_MAX >> 4) + 1];

static size_t class_size_formula(unsigned cls) {
  if (cls <= 8) return (size_t)cls * 16;
  unsigned g = (cls - 9) / 8, k = (cls - 9) % 8 + 1;
  size_t base = (size_t)128 << g;
  return base + k * (base / 8);
}

/* Pages per span: at least 8 blocks (4 above 8 KiB), at most 512 blocks,
 * and the smallest such count whose leftover tail is <= 1/8 of the span. */
static unsigned span_pages(size_t size) {
  size_t min_blocks = size <= 8192 ? 8 : 4;
  size_t pmin = (size * min_blocks + PL_PAGE_SIZE - 1) / PL_PAGE_SIZE;
  size_t pmax = size / 16; /* 512 blocks at most */
  if (pmin < 1) pmin = 1;
  if (pmax < pmin) pmax = pmin;
  for (size_t p = pmin; p <= pmax; p++) {
    size_t bytes = p * PL_PAGE_SIZE;
    if ((bytes % size) * 8 <= bytes) return (unsigned)p;
  }
  return (unsigned)pmin;
}

void pl_sizeclass_init(void) {
  if (pl_class_info[PL_NCLASSES].size != 0) return;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t size = class_size_formula(c);
    unsigned pages = span_pages(size);
    pl_class_info[c].pages = (uint16_t)pages;
    pl_class_info[c].nblocks = (uint16_t)(pages * PL_PAGE_SIZE / size);
    pl_class_info[c].recip = (((uint64_t)1 << PL_RECIP_SHIFT) + size - 1) / size;
    __atomic_store_n(&pl_class_info[c].size, (uint32_t)size, __ATOMIC_RELEASE);
  }
  unsigned c = 1;
  for (size_t i = 0; i <= (PL_SMALL_LOOKUP_MAX >> 4); i++) {
    size_t n = i << 4;
    while (class_size_formula(c) < n) c++;
    pl_class_lookup[i] = (uint8_t)c;
  }
}

unsigned pl_size_class_aligned(size_t n, size_t align) {
  if (n > PL_SMALL_MAX) return 0;
  for (unsigned c = pl_size_class(n); c <= PL_NCLASSES; c++)
    if ((pl_class_info[c].size & (align - 1)) == 0) return c;
  return 0;
}
