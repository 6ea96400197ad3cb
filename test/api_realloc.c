/*
 * api_realloc.c — API-contract tests for pallet_realloc and
 * pallet_reallocarray: realloc(NULL, n) is malloc, realloc(p, 0) frees and
 * returns NULL, a size that still fits in the usable size keeps the block
 * in place, contents survive growth and shrink between every pair of
 * ranges (small, large, huge), growth leaves room and a small shrink
 * keeps it, a failed realloc leaves the old block intact, and
 * reallocarray overflow is ENOMEM.
 */
#include "testutil.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static void test_realloc_null_is_malloc(void **state)
{
  const size_t sizes[] = { 0, 1, 17, 1000, 70 * KIB, 2 * MIB, 40 * MIB };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = pallet_realloc(NULL, sizes[i]);
    assert_non_null(p);
    assert_true(tu_is_aligned(p, 16));
    assert_true(pallet_malloc_usable_size(p) >= sizes[i]);
    memset(p, 0x42, sizes[i]);
    pallet_free(p);
  }
}

static void test_realloc_zero_frees(void **state)
{
  const size_t sizes[] = { 1, 100, 5000, 300 * KIB, 2 * MIB, 40 * MIB };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = pallet_malloc(sizes[i]);
    assert_non_null(p);
    errno = 0;
    assert_null(pallet_realloc(p, tu_opaque(0)));
    /* (api_misuse checks that the block really is free: freeing it
     * again is reported as a double free) */
    assert_int_equal(errno, 0);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

/* A size that still fits in malloc_usable_size keeps the block in place;
 * so does asking again for the original size. */
static void test_realloc_in_place(void **state)
{
  size_t n;
  (void)state;
  for (n = 1; n <= 32 * MIB; n = n * 2 + n / 3 + 1) {
    unsigned char *p = pallet_malloc(n), *q;
    size_t u;
    assert_non_null(p);
    u = pallet_malloc_usable_size(p);
    tu_fill(p, n, n);
    q = pallet_realloc(p, u);
    if (q != p)
      fail_msg("realloc(%zu-byte block, its usable size %zu) moved it", n, u);
    q = pallet_realloc(p, n);
    if (q != p)
      fail_msg("realloc(%zu-byte block, %zu) moved it", n, n);
    if (u > n) {
      q = pallet_realloc(p, u - 1);
      if (q != p)
        fail_msg("realloc(%zu-byte block, %zu) moved it (usable %zu)", n, u - 1, u);
    }
    assert_true(pallet_malloc_usable_size(p) >= n);
    assert_true(tu_check(p, n, n) == (size_t)-1);
    pallet_free(p);
  }
}

/* Grow and shrink between every pair of ranges; the common prefix is
 * preserved, the result aligned and big enough, the whole new size
 * writable. */
static void test_realloc_preserves_contents(void **state)
{
  const size_t sizes[] = { 0, 1, 16, 24, 100, 1000, 4096, 16 * KIB,
                           64 * KIB, 200 * KIB, 256 * KIB, 300 * KIB, MIB,
                           3 * MIB + 5, 8 * MIB, 64 * MIB };
  const size_t ns = sizeof sizes / sizeof sizes[0];
  size_t i, j;
  (void)state;
  for (i = 0; i < ns; i++)
    for (j = 0; j < ns; j++) {
      size_t from = sizes[i], to = sizes[j], keep = from < to ? from : to;
      uint64_t seed = i * 100 + j;
      unsigned char *p, *q;
      size_t bad;
      /* skip only the slowest pairs: 64 MiB to and from 64 MiB is done
       * below in the chain */
      if (from >= 64 * MIB && to >= 64 * MIB)
        continue;
      p = pallet_malloc(from);
      assert_non_null(p);
      tu_fill(p, from, seed);
      q = pallet_realloc(p, to);
      if (to == 0) {         /* realloc(p, 0) frees */
        if (q != NULL)
          fail_msg("realloc(%zu -> 0) returned %p, not NULL", from, (void *)q);
        continue;
      }
      if (q == NULL)
        fail_msg("realloc(%zu -> %zu) failed", from, to);
      assert_true(tu_is_aligned(q, 16));
      assert_true(pallet_malloc_usable_size(q) >= to);
      bad = tu_check(q, keep, seed);
      if (bad != (size_t)-1)
        fail_msg("realloc(%zu -> %zu) lost the contents at offset %zu",
                 from, to, bad);
      memset(q, 0xAB, to);
      pallet_free(q);
    }
  assert_int_equal(pallet_heap_check(), 0);
}

/* One block walked through a chain of sizes, with other blocks around so
 * that growing in place is not always possible. */
static void test_realloc_chain(void **state)
{
  const size_t chain[] = { 10, 40, 33, 500, 130 * KIB, 120 * KIB, 600 * KIB,
                           2 * MIB, 70 * MIB, 66 * MIB, 80 * MIB, 1 * MIB,
                           300, 5000, 1, 20 * MIB, 32 };
  size_t i, held = 0;
  unsigned char *p = NULL;
  void *others[32];
  (void)state;
  for (i = 0; i < sizeof chain / sizeof chain[0]; i++) {
    size_t keep = held < chain[i] ? held : chain[i], bad;
    p = pallet_realloc(p, chain[i]);
    assert_non_null(p);
    others[i] = pallet_malloc(chain[i] / 2 + 1);
    assert_non_null(others[i]);
    bad = tu_check(p, keep, 4242);
    if (bad != (size_t)-1)
      fail_msg("step %zu: realloc(%zu -> %zu) lost contents at offset %zu", i,
               held, chain[i], bad);
    tu_fill(p, chain[i], 4242);
    held = chain[i];
  }
  for (i = 0; i < sizeof chain / sizeof chain[0]; i++)
    pallet_free(others[i]);
  pallet_free(p);
  assert_int_equal(pallet_heap_check(), 0);
}

/* Growth leaves room: a large block (in place or moved) and a huge one
 * get a quarter more than asked for, so that a buffer grown a little at
 * a time is not resized at every page; a small block growing past 64 KiB
 * becomes a large block (counted in the statistics' large bytes); a
 * large block that still fits keeps its tail unless that is a quarter of
 * it or more. */
static void test_realloc_growth_room(void **state)
{
  const size_t from[] = { 300 * KIB, 6 * MIB };
  pallet_stats_t st0, st1;
  unsigned char *p, *q;
  size_t i, u, u2;
  (void)state;
  for (i = 0; i < sizeof from / sizeof from[0]; i++) {
    p = pallet_malloc(from[i]);
    assert_non_null(p);
    u = pallet_malloc_usable_size(p);
    tu_fill(p, u, 77);
    q = pallet_realloc(p, u + 1);
    assert_non_null(q);
    u2 = pallet_malloc_usable_size(q);
    if (u2 < u + u / 4)
      fail_msg("realloc(%zu-byte block, %zu): usable %zu, expected >= %zu", u, u + 1,
               u2, u + u / 4);
    assert_true(tu_check(q, u, 77) == (size_t)-1);
    /* Calls that still fit keep the block and its room. */
    p = pallet_realloc(q, u + 2);
    assert_ptr_equal(p, q);
    assert_int_equal(pallet_malloc_usable_size(p), u2);
    pallet_free(p);
  }

  /* A small block that grows past 64 KiB becomes a large one. */
  p = pallet_malloc(60 * KIB);
  assert_non_null(p);
  tu_fill(p, 60 * KIB, 78);
  assert_int_equal(pallet_stats_get(&st0), 0);
  q = pallet_realloc(p, 80 * KIB);
  assert_non_null(q);
  assert_int_equal(pallet_stats_get(&st1), 0);
  u = pallet_malloc_usable_size(q);
  assert_true(u >= 80 * KIB);
  assert_true(st1.large >= st0.large + u);
  assert_true(tu_check(q, 60 * KIB, 78) == (size_t)-1);

  /* A large block: a small shrink keeps the tail, a big one gives it back. */
  p = pallet_realloc(q, u - u / 8);
  assert_ptr_equal(p, q);
  assert_int_equal(pallet_malloc_usable_size(p), u);
  p = pallet_realloc(q, u / 2);
  assert_ptr_equal(p, q);
  assert_true(pallet_malloc_usable_size(p) < u);
  assert_true(pallet_malloc_usable_size(p) >= u / 2);
  assert_true(tu_check(p, u / 2 < 60 * KIB ? u / 2 : 60 * KIB, 78) == (size_t)-1);
  pallet_free(p);
  assert_int_equal(pallet_heap_check(), 0);
}

/* A failed realloc returns NULL with ENOMEM and leaves the block as it
 * was: same contents, still ours, still freeable. */
static void test_realloc_failure_keeps_block(void **state)
{
  const size_t sizes[] = { 24, 3000, 100 * KIB, 2 * MIB, 40 * MIB };
  const size_t bad_sizes[] = { SIZE_MAX, (size_t)PTRDIFF_MAX + 1,
                               (size_t)PTRDIFF_MAX, (size_t)1 << 62 };
  size_t i, j;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = pallet_malloc(sizes[i]);
    size_t u;
    assert_non_null(p);
    u = pallet_malloc_usable_size(p);
    tu_fill(p, sizes[i], i + 9);
    for (j = 0; j < sizeof bad_sizes / sizeof bad_sizes[0]; j++) {
      void *q;
      errno = 0;
      q = pallet_realloc(p, tu_opaque(bad_sizes[j]));
      if (q != NULL || errno != ENOMEM)
        fail_msg("realloc(%zu-byte block, %#zx) = %p, errno %d", sizes[i],
                 bad_sizes[j], q, errno);
      errno = 0;
      q = pallet_reallocarray(p, tu_opaque(bad_sizes[j]), 1);
      if (q != NULL || errno != ENOMEM)
        fail_msg("reallocarray(%zu-byte block, %#zx, 1) = %p, errno %d",
                 sizes[i], bad_sizes[j], q, errno);
    }
    assert_int_equal(pallet_malloc_usable_size(p), u);
    assert_true(tu_check(p, sizes[i], i + 9) == (size_t)-1);
    pallet_free(p);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_reallocarray(void **state)
{
  unsigned char *p;
  void *q;
  size_t bad;
  (void)state;
  p = pallet_reallocarray(NULL, 10, 10);
  assert_non_null(p);
  assert_true(pallet_malloc_usable_size(p) >= 100);
  tu_fill(p, 100, 5);
  p = pallet_reallocarray(p, 1000, 1000);
  assert_non_null(p);
  assert_true(pallet_malloc_usable_size(p) >= 1000000);
  bad = tu_check(p, 100, 5);
  assert_true(bad == (size_t)-1);
  /* overflowing products: NULL, ENOMEM, block untouched */
  tu_fill(p, 1000000, 6);
  errno = 0;
  q = pallet_reallocarray(p, tu_opaque((size_t)1 << 32), tu_opaque((size_t)1 << 32));
  assert_null(q);
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  q = pallet_reallocarray(p, tu_opaque(SIZE_MAX), tu_opaque(3));
  assert_null(q);
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  q = pallet_reallocarray(NULL, tu_opaque(SIZE_MAX / 2 + 1), tu_opaque(2));
  assert_null(q);
  assert_int_equal(errno, ENOMEM);
  assert_true(tu_check(p, 1000000, 6) == (size_t)-1);
  /* reallocarray(p, 0, n) behaves as realloc(p, 0) */
  assert_null(pallet_reallocarray(p, tu_opaque(0), 8));
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_realloc_null_is_malloc),
    cmocka_unit_test(test_realloc_zero_frees),
    cmocka_unit_test(test_realloc_in_place),
    cmocka_unit_test(test_realloc_preserves_contents),
    cmocka_unit_test(test_realloc_chain),
    cmocka_unit_test(test_realloc_growth_room),
    cmocka_unit_test(test_realloc_failure_keeps_block),
    cmocka_unit_test(test_reallocarray),
  };
  tu_watchdog("api_realloc", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
