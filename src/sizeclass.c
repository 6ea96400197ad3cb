/*
 * sizeclass.c — builds the size-class tables (see sizeclass.h).
 */
#include "sizeclass.h"

pl_class_info_t pl_class_info[PL_NCLASSES + 1];
uint64_t pl_class_inner_words[PL_NCLASSES + 1];
uint8_t pl_class_lookup[(PL_SMALL_LOOKUP_MAX >> 4) + 1];

static size_t class_size_formula(unsigned cls) {
  if (cls <= 8) return (size_t)cls * 16;
  unsigned g = (cls - 9) / 8, k = (cls - 9) % 8 + 1;
  size_t base = (size_t)128 << g;
  return base + k * (base / 8);
}

/* Pages per span: the span holds a whole number of blocks with nothing
 * left over (so that no multiple of the block size inside a span is
 * anything but a block start: free's check needs no bound), at most 512
 * blocks, and at least 8 blocks (4 above 8 KiB, 1 above 32 KiB, so that
 * big blocks do not strand memory in half-used spans) where possible.
 * With size = 16 m, a span of p pages holds p 512 / m blocks, a whole
 * number exactly when p is a multiple of p0 = m / gcd(m, 512). */
static unsigned span_pages(size_t size) {
  size_t m = size / 16;
  size_t g = 512;
  for (size_t a = m, b = 512; b;) { /* gcd(m, 512) */
    size_t t = a % b;
    a = b;
    b = t;
    g = a;
  }
  size_t p0 = m / g;
  size_t min_blocks = size <= 8192 ? 8 : size <= PL_BIG_CLASS_MIN ? 4 : 1;
  size_t min_pages = (size * min_blocks + PL_PAGE_SIZE - 1) / PL_PAGE_SIZE;
  size_t k = (min_pages + p0 - 1) / p0;
  if (k > g) k = g; /* blocks = k * 512 / g <= 512 */
  if (k < 1) k = 1;
  return (unsigned)(k * p0);
}

void pl_sizeclass_init(void) {
  if (pl_class_info[PL_NCLASSES].size != 0) return;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t size = class_size_formula(c);
    unsigned pages = span_pages(size);
    pl_class_info[c].pages = (uint16_t)pages;
    pl_class_info[c].nblocks = (uint16_t)(pages * PL_PAGE_SIZE / size);
    pl_class_info[c].recip = (((uint64_t)1 << PL_RECIP_SHIFT) + size - 1) / size;
    uint64_t starts = 0;
    for (size_t i = 0; i < pl_class_info[c].nblocks; i++) starts |= (uint64_t)1 << ((i * size) >> PL_PW_SHIFT);
    size_t nw = (size_t)pages * PL_PW_PER_PAGE;
    pl_class_inner_words[c] = pl_low_bits64(nw) & ~starts;
    __atomic_store_n(&pl_class_info[c].size, (uint32_t)size, __ATOMIC_RELEASE);
  }
  unsigned c = 1;
  for (size_t i = 0; i <= (PL_SMALL_LOOKUP_MAX >> 4); i++) {
    size_t n = i << 4;
    while (class_size_formula(c) < n) c++;
    pl_class_lookup[i] = (uint8_t)c;
  }
}

/* With m = n rounded up to a multiple of align (>= 16), the class of m is
 * a multiple of align: for m <= 128 the classes are every multiple of 16;
 * above, m in (2^k, 2^(k+1)] lands in a class that is a multiple of the
 * step 2^(k-3), which is m itself when align >= the step and a multiple
 * of align (both powers of two) when it is below.  No smaller class is a
 * multiple of align and >= n, since m is the least such number
 * (test/unit_sizeclass checks every n against the table). */
unsigned pl_size_class_aligned(size_t n, size_t align) {
  if (n > PL_SMALL_MAX) return 0;
  size_t m = ((n ? n : 1) + align - 1) & ~(align - 1);
  return m <= PL_SMALL_MAX ? pl_size_class(m) : 0;
}
