/*
 * api_calloc.c — API-contract tests for pallet_calloc: overflowing
 * nmemb * size gives NULL and ENOMEM; the memory reads as zero, both when
 * it reuses a block the program filled with garbage and freed, and when it
 * is freshly mapped (big sizes), over and over.
 */
#include "testutil.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static void test_calloc_overflow(void **state)
{
  const size_t pairs[][2] = {
    { SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
    { (size_t)1 << 32, (size_t)1 << 32 }, { ((size_t)1 << 33) + 1, (size_t)1 << 31 },
    { SIZE_MAX / 16 + 1, 16 }, { 16, SIZE_MAX / 16 + 1 },
    /* no overflow but past PTRDIFF_MAX */
    { (size_t)1 << 32, (size_t)1 << 31 }, { (size_t)PTRDIFF_MAX / 2 + 1, 2 },
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    void *p;
    errno = 0;
    p = pallet_calloc(tu_opaque(pairs[i][0]), tu_opaque(pairs[i][1]));
    if (p != NULL || errno != ENOMEM)
      fail_msg("calloc(%#zx, %#zx) = %p, errno %d; want NULL, ENOMEM",
               pairs[i][0], pairs[i][1], p, errno);
  }
}

static void test_calloc_zero_sizes(void **state)
{
  void *a, *b, *c;
  (void)state;
  a = pallet_calloc(0, 0);
  b = pallet_calloc(0, 100);
  c = pallet_calloc(100, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(b, c);
  assert_ptr_not_equal(a, c);
  assert_true(tu_is_aligned(a, 16) && tu_is_aligned(b, 16) && tu_is_aligned(c, 16));
  pallet_free(a);
  pallet_free(b);
  pallet_free(c);
}

static void expect_zero(const void *p, size_t n, const char *how, int round)
{
  size_t bad = tu_first_nonzero(p, n);
  if (bad != (size_t)-1)
    fail_msg("%s: calloc of %zu bytes (round %d) has byte %zu = %#x, not zero",
             how, n, round, bad, ((const unsigned char *)p)[bad]);
}

/* Fill with garbage, free, calloc the same size: must read zero; many
 * rounds and many sizes, in every range. */
static void test_calloc_reused_reads_zero(void **state)
{
  const size_t sizes[] = { 1, 8, 16, 24, 48, 100, 255, 512, 1000, 4096, 5000,
                           32 * KIB, 40000, 100 * KIB, 256 * KIB, 300 * KIB,
                           MIB, 3 * MIB, 8 * MIB };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    int rounds = n >= MIB ? 8 : 60, r;
    for (r = 0; r < rounds; r++) {
      unsigned char *g = pallet_malloc(n), *z;
      assert_non_null(g);
      memset(g, 0xA5 ^ r, pallet_malloc_usable_size(g));
      pallet_free(g);
      z = pallet_calloc(1, n);
      assert_non_null(z);
      assert_true(tu_is_aligned(z, 16));
      expect_zero(z, n, "after free of garbage", r);
      memset(z, 0xC3, n);
      pallet_free(z);
      z = pallet_calloc(n, 1);
      assert_non_null(z);
      expect_zero(z, n, "calloc(n, 1)", r);
      memset(z, 0x3C, pallet_malloc_usable_size(z));
      pallet_free(z);
    }
  }
  assert_int_equal(pallet_heap_check(), 0);
}

/* calloc zeroes the whole block, all malloc_usable_size bytes, also when
 * it hands back a block the thread cache just took from free(). */
static void test_calloc_zeroes_usable(void **state)
{
  size_t n;
  (void)state;
  for (n = 1; n <= 1100; n += (n < 64 ? 1 : 7)) {
    unsigned char *g = pallet_malloc(n), *z;
    size_t u, i;
    assert_non_null(g);
    u = pallet_malloc_usable_size(g);
    assert_true(u >= n);
    memset(g, 0xEE, u);
    pallet_free(g);
    z = pallet_calloc(n, 1);
    assert_non_null(z);
    assert_ptr_equal(z, g); /* the block just freed, from the cache */
    assert_int_equal(pallet_malloc_usable_size(z), u);
    for (i = 0; i < u; i++)
      if (z[i] != 0)
        fail_msg("calloc(%zu, 1): byte %zu of %zu usable is %#x", n, i, u, z[i]);
    pallet_free(z);
  }
}

/* Many blocks of one class dirtied and freed, then as many callocs. */
static void test_calloc_many_reused(void **state)
{
  enum { N = 3000 };
  static void *p[N];
  const size_t sizes[] = { 32, 192, 2000, 20000 };
  size_t s;
  int i;
  (void)state;
  for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    for (i = 0; i < N; i++) {
      assert_non_null(p[i] = pallet_malloc(sizes[s]));
      memset(p[i], 0xFF, sizes[s]);
    }
    for (i = 0; i < N; i++)
      pallet_free(p[i]);
    for (i = 0; i < N; i++) {
      assert_non_null(p[i] = pallet_calloc(sizes[s] / 8, 8));
      expect_zero(p[i], sizes[s], "one of many", i);
    }
    for (i = 0; i < N; i++)
      pallet_free(p[i]);
  }
}

/* Big callocs (freshly mapped or recycled large spans), each dirtied
 * before being freed. */
static void test_calloc_big(void **state)
{
  const size_t sizes[] = { 2 * MIB, 5 * MIB + 3, 16 * MIB, 64 * MIB };
  size_t i;
  int r;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (r = 0; r < 4; r++) {
      unsigned char *z = pallet_calloc(sizes[i], 1);
      assert_non_null(z);
      expect_zero(z, sizes[i], "big", r);
      memset(z, 0x77, sizes[i]);
      pallet_free(z);
    }
  /* a big block split among smaller ones afterwards */
  {
    unsigned char *big = pallet_malloc(4 * MIB), *z[16];
    assert_non_null(big);
    memset(big, 0xEE, 4 * MIB);
    pallet_free(big);
    for (r = 0; r < 16; r++) {
      z[r] = pallet_calloc(1, 200 * KIB + (size_t)r);
      assert_non_null(z[r]);
      expect_zero(z[r], 200 * KIB + (size_t)r, "split", r);
      memset(z[r], 0x99, 200 * KIB);
    }
    for (r = 0; r < 16; r++)
      pallet_free(z[r]);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_calloc_overflow),
    cmocka_unit_test(test_calloc_zero_sizes),
    cmocka_unit_test(test_calloc_reused_reads_zero),
    cmocka_unit_test(test_calloc_zeroes_usable),
    cmocka_unit_test(test_calloc_many_reused),
    cmocka_unit_test(test_calloc_big),
  };
  tu_watchdog("api_calloc", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
