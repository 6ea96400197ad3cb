/*
 * sizeclass.h — the size classes: 96 block sizes from 16 B to 256 KiB.
 *
 *   classes 1..8:   16, 32, ..., 128            (steps of 16)
 *   then 8 classes per doubling: for base = 128, 256, ..., 128 KiB the
 *   sizes base + k * base/8, k = 1..8            (steps of base/8)
 *
 * Every class is a multiple of 16.  A request n > 128 lands in a class c
 * with c - n < base/8 <= n/8, so the rounding waste is below 12.5% of the
 * request (and of the class).  Each class carves spans of `pages` pages into
 * nblocks blocks (<= 512) with nothing left over, so every multiple of the
 * size inside a span is a block start.
 * Sizes up to 1 KiB find their class with one table lookup; larger ones
 * with a bit scan (malloc's fast path uses tables of bins, tcache.h).
 * Class 0 means "no class" throughout pallet.
 */
#ifndef PL_SIZECLASS_H
#define PL_SIZECLASS_H

#include "common.h"

#define PL_NCLASSES 96
#define PL_SMALL_LOOKUP_MAX 1024

/* Hot per-class facts, 16 bytes each (a power-of-two stride). */
typedef struct pl_class_info {
  uint32_t size;   /* block size */
  uint16_t pages;  /* pages per span */
  uint16_t nblocks;
  uint64_t recip;  /* ceil(2^42 / size): block index = (off * recip) >> 42 */
} pl_class_info_t;

#define PL_RECIP_SHIFT 42
/* Classes above this size get spans of one or two blocks (span_pages in
 * sizeclass.c asks for at least 4 blocks only up to it), so every block
 * that goes back to the central lists can empty a span: the transfer
 * arrays (central.c) and the burst caps (tcache.c) treat them apart. */
#define PL_BIG_CLASS_MIN ((size_t)32 << 10)

extern pl_class_info_t pl_class_info[PL_NCLASSES + 1] PL_HIDDEN;
/* The page words (4 KiB each, common.h) of a class's span under which no
 * block starts (bit k: its k-th word; a span is at most 32 pages, 64
 * words): a pointer there is inside a block. */
extern uint64_t pl_class_inner_words[PL_NCLASSES + 1] PL_HIDDEN;
extern uint8_t pl_class_lookup[(PL_SMALL_LOOKUP_MAX >> 4) + 1] PL_HIDDEN;

/* Fills the tables; idempotent. */
void pl_sizeclass_init(void) PL_HIDDEN;

/* Class of a request of n bytes, 1 <= class <= PL_NCLASSES; n must be
 * <= PL_SMALL_MAX. */
PL_INLINE unsigned pl_size_class(size_t n) {
  if (PL_LIKELY(n <= PL_SMALL_LOOKUP_MAX)) return pl_class_lookup[(n + 15) >> 4];
  size_t x = n - 1;
  unsigned lg = 63u - (unsigned)__builtin_clzll(x); /* >= 10 */
  return 8u + (lg - 7u) * 8u + (unsigned)((x >> (lg - 3u)) & 7u) + 1u;
}

PL_INLINE size_t pl_class_size(unsigned cls) { return pl_class_info[cls].size; }

/* Block index of byte offset off inside a span of class cls, and whether
 * off is exactly the start of a block. */
PL_INLINE size_t pl_class_index(unsigned cls, size_t off) {
  return (size_t)((off * pl_class_info[cls].recip) >> PL_RECIP_SHIFT);
}

/* Whether byte offset off (< 4 MiB) inside a span is NOT a block start,
 * from the reciprocal alone.  With r = ceil(2^42 / s) = (2^42 + e) / s,
 * 0 <= e < s <= 2^18, and off = k s + q (0 <= q < s):
 *   off * r = k 2^42 + k e + q (2^42 + e) / s,
 * so the low 42 bits are k e < k s <= 2^22 when q = 0, and at least
 * 2^42 / s >= 2^24 when q > 0 (and below 2^42: no wrap).  Bits 22..41 of
 * off * r are therefore all zero exactly when off is a multiple of s.
 * With rs = r << 22 (mod 2^64), off * rs is the low 42 bits of off * r
 * moved to the top: one shift of 44 leaves exactly bits 22..41. */
PL_INLINE uint64_t pl_class_recip_shifted(unsigned cls) {
  return pl_class_info[cls].recip << 22;
}
PL_INLINE bool pl_class_prod_misaligned(uint64_t off_times_recip_shifted) {
  return off_times_recip_shifted >> 44 != 0;
}
PL_INLINE bool pl_class_off_misaligned(size_t off, uint64_t recip_shifted) {
  return pl_class_prod_misaligned(off * recip_shifted);
}
/* The same test on the unshifted product off * r (bits 22..41 all zero),
 * for loops that also want the block index (its bits from
 * PL_RECIP_SHIFT up). */
#define PL_RECIP_FRACTION_BITS ((((uint64_t)1 << PL_RECIP_SHIFT) - 1) & ~(((uint64_t)1 << 22) - 1))
PL_INLINE bool pl_class_prod_starts_block(uint64_t off_times_recip) {
  return (off_times_recip & PL_RECIP_FRACTION_BITS) == 0;
}

/* The smallest class of size >= n whose size is a multiple of align (a
 * power of two, 16 <= align <= PL_PAGE_SIZE), so that every block of a
 * span is aligned: the class of n rounded up to a multiple of align
 * (sizeclass.c says why); 0 when n is too large for any such class. */
unsigned pl_size_class_aligned(size_t n, size_t align) PL_HIDDEN;

#endif /* PL_SIZECLASS_H */
