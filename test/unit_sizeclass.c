/*
 * unit_sizeclass.c — unit tests of the size-class tables (sizeclass.h):
 * every request size up to PL_SMALL_MAX maps to the smallest class that
 * holds it, the class sizes follow the documented shape (multiples of 16,
 * strictly increasing, <= 12.5% rounding waste above 128 B), each class's
 * span geometry is consistent, the reciprocal block-index computation is
 * exact for every byte offset of every span, and the aligned class lookup
 * returns the smallest suitable class.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "common.h"
#include "lifecycle.h"
#include "sizeclass.h"
#include "span.h"

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  return 0;
}

/* Every request size maps to the smallest class holding it. */
static void test_every_size(void **state) {
  (void)state;
  for (size_t n = 0; n <= PL_SMALL_MAX; n++) {
    unsigned c = pl_size_class(n);
    if (c < 1 || c > PL_NCLASSES) fail_msg("n=%zu: class %u out of range", n, c);
    size_t sz = pl_class_size(c);
    if (sz < n) fail_msg("n=%zu: class %u has size %zu < n", n, c, sz);
    if (c > 1 && pl_class_size(c - 1) >= n)
      fail_msg("n=%zu: class %u not the smallest (class %u has size %zu)", n, c,
               c - 1, pl_class_size(c - 1));
    if (sz % 16 != 0) fail_msg("n=%zu: class size %zu not a multiple of 16", n, sz);
    if (n > 128 && (sz - n) * 8 > n)
      fail_msg("n=%zu: class size %zu wastes more than 12.5%%", n, sz);
    /* The one-lookup path and the bit-scan path must agree where they
     * overlap: the table entry is what pl_size_class returns below 1 KiB. */
    if (n <= PL_SMALL_LOOKUP_MAX && pl_class_lookup[(n + 15) >> 4] != c)
      fail_msg("n=%zu: lookup table disagrees", n);
  }
  /* A size just above the largest class has no class: PL_SMALL_MAX is the
   * last class's size. */
  assert_int_equal(pl_size_class(PL_SMALL_MAX), PL_NCLASSES);
}

static void test_class_sizes(void **state) {
  (void)state;
  assert_int_equal(pl_class_size(1), 16);
  assert_int_equal(pl_class_size(PL_NCLASSES), PL_SMALL_MAX);
  assert_int_equal(PL_SMALL_MAX, 256 * 1024);
  for (unsigned c = 2; c <= PL_NCLASSES; c++) {
    if (pl_class_size(c) <= pl_class_size(c - 1))
      fail_msg("class %u size %zu not above class %u size %zu", c,
               pl_class_size(c), c - 1, pl_class_size(c - 1));
    assert_int_equal(pl_class_size(c) % 16, 0);
  }
  /* Each class is reachable: a request of exactly its size maps to it. */
  for (unsigned c = 1; c <= PL_NCLASSES; c++)
    assert_int_equal(pl_size_class(pl_class_size(c)), c);
}

/* Span geometry of every class. */
static void test_span_geometry(void **state) {
  (void)state;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    const pl_class_info_t *ci = &pl_class_info[c];
    size_t bytes = (size_t)ci->pages * PL_PAGE_SIZE;
    if (ci->pages < 1 || ci->pages > PL_CHUNK_PAGES)
      fail_msg("class %u: %u pages per span", c, (unsigned)ci->pages);
    if (bytes / ci->size != ci->nblocks)
      fail_msg("class %u: %zu / %u = %zu, but nblocks = %u", c, bytes,
               (unsigned)ci->size, bytes / ci->size, (unsigned)ci->nblocks);
    if (ci->nblocks < 1 || ci->nblocks > PL_SPAN_MAX_BLOCKS)
      fail_msg("class %u: %u blocks per span", c, (unsigned)ci->nblocks);
    size_t leftover = bytes - (size_t)ci->nblocks * ci->size;
    if (leftover * 8 > bytes)
      fail_msg("class %u (size %u): %zu of %zu span bytes left over", c,
               (unsigned)ci->size, leftover, bytes);
  }
}

/* The reciprocal gives off / size for every byte offset of every span of
 * every class (and so tells block starts from interior offsets). */
static void test_class_index_exhaustive(void **state) {
  (void)state;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t size = pl_class_size(c);
    size_t bytes = (size_t)pl_class_info[c].pages * PL_PAGE_SIZE;
    for (size_t off = 0; off < bytes; off++) {
      size_t idx = pl_class_index(c, off);
      if (idx != off / size)
        fail_msg("class %u (size %zu): index(%zu) = %zu, want %zu", c, size,
                 off, idx, off / size);
    }
  }
}

/* Block starts and the sample interior offsets named by the design. */
/* free's block-start check (pl_class_off_misaligned, from the shifted
 * reciprocal alone) against plain division: every offset of every span,
 * and a sample of offsets up to the end of a chunk. */
static void test_block_start_check(void **state) {
  (void)state;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t s = pl_class_size(c);
    size_t span = (size_t)pl_class_info[c].pages * PL_PAGE_SIZE;
    uint64_t rs = pl_class_recip_shifted(c);
    for (size_t off = 0; off < span; off++)
      if (pl_class_off_misaligned(off, rs) != (off % s != 0))
        fail_msg("class %u (size %zu): offset %zu judged wrongly", c, s, off);
    for (size_t off = span; off < PL_CHUNK_SIZE; off += 13)
      if (pl_class_off_misaligned(off, rs) != (off % s != 0))
        fail_msg("class %u (size %zu): far offset %zu judged wrongly", c, s, off);
  }
}

static void test_class_index_boundaries(void **state) {
  (void)state;
  static const size_t deltas[] = {1, 8, 15};
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t size = pl_class_size(c);
    for (size_t i = 0; i < pl_class_info[c].nblocks; i++) {
      size_t off = i * size;
      assert_int_equal(pl_class_index(c, off), i);
      assert_true(pl_class_index(c, off) * size == off);
      for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
        size_t o = off + deltas[d];
        size_t idx = pl_class_index(c, o);
        if (idx != i || idx * size == o)
          fail_msg("class %u: offset %zu taken for a block start (idx %zu)", c, o, idx);
      }
      size_t last = off + size - 1;
      assert_int_equal(pl_class_index(c, last), i);
    }
  }
}

/* pl_size_class_aligned: the smallest class >= n whose size is a multiple
 * of the alignment, or 0 when none is. */
static void test_aligned_classes(void **state) {
  (void)state;
  for (size_t a = 32; a <= PL_PAGE_SIZE; a *= 2) {
    size_t found = 0;
    for (size_t n = 0; n <= PL_SMALL_MAX; n += (n < 8192 ? 1 : 7)) {
      unsigned c = pl_size_class_aligned(n, a);
      /* The expected answer, by brute force over the class table. */
      unsigned want = 0;
      for (unsigned k = 1; k <= PL_NCLASSES && want == 0; k++)
        if (pl_class_size(k) >= n && pl_class_size(k) % a == 0) want = k;
      if (c != want)
        fail_msg("aligned(n=%zu, a=%zu) = %u, want %u", n, a, c, want);
      if (c != 0) {
        found++;
        assert_true(pl_class_size(c) % a == 0);
        assert_true(pl_class_size(c) >= n);
        /* Every block of a span of this class is then a-aligned, since
         * spans start on page boundaries. */
        assert_true((pl_class_size(c) % a) == 0 && PL_PAGE_SIZE % a == 0);
      }
    }
    assert_true(found > 0);
    /* The largest class is a multiple of every alignment up to a page. */
    assert_int_equal(pl_size_class_aligned(PL_SMALL_MAX, a), PL_NCLASSES);
    assert_int_equal(pl_size_class_aligned(PL_SMALL_MAX + 1, a), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_size),
      cmocka_unit_test(test_class_sizes),
      cmocka_unit_test(test_span_geometry),
      cmocka_unit_test(test_class_index_exhaustive),
      cmocka_unit_test(test_class_index_boundaries),
      cmocka_unit_test(test_block_start_check),
      cmocka_unit_test(test_aligned_classes),
  };
  return cmocka_run_group_tests_name("unit_sizeclass", tests, setup, NULL);
}
