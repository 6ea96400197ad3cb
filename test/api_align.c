/*
 * api_align.c — API-contract tests for the aligned allocators:
 * pallet_posix_memalign (EINVAL for an alignment that is not a power of
 * two multiple of sizeof(void *), *out untouched and errno unchanged),
 * pallet_aligned_alloc (EINVAL for zero or a non power of two, as glibc
 * 2.38), pallet_memalign (odd alignments rounded up, EINVAL only past
 * half the address space), pallet_valloc, pallet_pvalloc and
 * pallet_free_aligned_sized; alignments from 1 B to 4 MiB.
 */
#include "testutil.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

static const size_t sizes[] = { 0, 1, 15, 16, 17, 100, 4095, 4096, 4097,
                                70 * KIB, 300 * KIB, MIB + 1, 5 * MIB };
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Checks one aligned block and frees it through `how` (0 free, 1
 * free_aligned_sized, 2 free_sized). */
static void check_block(const char *fn, void *p, size_t alignment, size_t n,
                        int how)
{
  size_t need = alignment < 16 ? 16 : alignment, u;
  if (p == NULL)
    fail_msg("%s(%zu, %zu) returned NULL", fn, alignment, n);
  if (!tu_is_aligned(p, need))
    fail_msg("%s(%zu, %zu) = %p is not %zu-aligned", fn, alignment, n, p, need);
  u = pallet_malloc_usable_size(p);
  if (u < n)
    fail_msg("%s(%zu, %zu): usable size %zu", fn, alignment, n, u);
  tu_fill(p, u, alignment + n);
  if (tu_check(p, u, alignment + n) != (size_t)-1)
    fail_msg("%s(%zu, %zu): block not writable", fn, alignment, n);
  if (how == 1)
    pallet_free_aligned_sized(p, alignment, n);
  else if (how == 2)
    pallet_free_sized(p, n);
  else
    pallet_free(p);
}

static void test_posix_memalign_valid(void **state)
{
  size_t a, i;
  (void)state;
  for (a = sizeof(void *); a <= 4 * MIB; a *= 2)
    for (i = 0; i < NSIZES; i++) {
      void *p = (void *)&p;
      int r = pallet_posix_memalign(&p, a, sizes[i]);
      if (r != 0)
        fail_msg("posix_memalign(%zu, %zu) returned %d", a, sizes[i], r);
      check_block("posix_memalign", p, a, sizes[i], (int)(i % 3));
    }
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_posix_memalign_invalid(void **state)
{
  const size_t bad[] = { 0, 1, 2, 4, 3, 12, 24, 48, 3 * sizeof(void *),
                         4096 + 8, ((size_t)1 << 63) + 8, SIZE_MAX,
                         SIZE_MAX - 7 };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = (void *)&p;
    int r;
    errno = EILSEQ;
    r = pallet_posix_memalign(&p, tu_opaque(bad[i]), 64);
    if (r != EINVAL)
      fail_msg("posix_memalign(%#zx, 64) returned %d, want EINVAL", bad[i], r);
    if (p != (void *)&p)
      fail_msg("posix_memalign(%#zx, 64) changed *out on failure", bad[i]);
    if (errno != EILSEQ)
      fail_msg("posix_memalign(%#zx, 64) set errno to %d", bad[i], errno);
  }
  /* a huge alignment is valid but cannot be satisfied: ENOMEM */
  {
    void *p = (void *)&p;
    int r = pallet_posix_memalign(&p, tu_opaque((size_t)1 << 62), 1);
    assert_int_equal(r, ENOMEM);
    assert_ptr_equal(p, (void *)&p);
  }
}

static void test_aligned_alloc(void **state)
{
  const size_t bad[] = { 0, 3, 5, 24, 48, 100, 4096 + 16, ((size_t)1 << 63) | 1,
                         SIZE_MAX };
  size_t a, i;
  (void)state;
  for (a = 1; a <= 4 * MIB; a *= 2)
    for (i = 0; i < NSIZES; i++)
      check_block("aligned_alloc", pallet_aligned_alloc(a, sizes[i]), a,
                  sizes[i], (int)(i % 2));
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p;
    errno = 0;
    p = pallet_aligned_alloc(tu_opaque(bad[i]), 64);
    if (p != NULL || errno != EINVAL)
      fail_msg("aligned_alloc(%#zx, 64) = %p, errno %d; want NULL, EINVAL",
               bad[i], p, errno);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

static size_t next_pow2(size_t x)
{
  size_t p = 1;
  while (p < x)
    p <<= 1;
  return p;
}

static void test_memalign(void **state)
{
  const size_t odd[] = { 0, 1, 3, 5, 7, 24, 33, 100, 1000, 3000, 4097,
                         100000, 3 * MIB };
  size_t a, i;
  void *p;
  (void)state;
  for (a = 1; a <= 4 * MIB; a *= 2)
    for (i = 0; i < NSIZES; i++)
      check_block("memalign", pallet_memalign(a, sizes[i]), a, sizes[i], 0);
  /* an alignment that is not a power of two is rounded up to one */
  for (i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    size_t want = next_pow2(odd[i] == 0 ? 1 : odd[i]);
    p = pallet_memalign(tu_opaque(odd[i]), 200);
    if (p == NULL)
      fail_msg("memalign(%zu, 200) returned NULL", odd[i]);
    if (!tu_is_aligned(p, want < 16 ? 16 : want))
      fail_msg("memalign(%zu, 200) = %p, not %zu-aligned", odd[i], p, want);
    assert_true(pallet_malloc_usable_size(p) >= 200);
    memset(p, 1, 200);
    pallet_free(p);
  }
  /* past half the address space: EINVAL */
  errno = 0;
  p = pallet_memalign(tu_opaque(((size_t)1 << 63) + 1), 16);
  assert_null(p);
  assert_int_equal(errno, EINVAL);
  errno = 0;
  p = pallet_memalign(tu_opaque(SIZE_MAX), 16);
  assert_null(p);
  assert_int_equal(errno, EINVAL);
  /* half the address space or less: a valid request that cannot be met */
  errno = 0;
  p = pallet_memalign(tu_opaque((size_t)1 << 63), 16);
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  p = pallet_memalign(tu_opaque((size_t)1 << 62), 16);
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_valloc(void **state)
{
  size_t page = tu_page_size(), i;
  (void)state;
  for (i = 0; i < NSIZES; i++) {
    void *p = pallet_valloc(sizes[i]);
    check_block("valloc", p, page, sizes[i], 0);
  }
}

static void test_pvalloc(void **state)
{
  size_t page = tu_page_size(), i;
  (void)state;
  for (i = 0; i < NSIZES; i++) {
    size_t n = sizes[i], rounded = (n + page - 1) / page * page;
    void *p = pallet_pvalloc(n);
    assert_non_null(p);
    if (!tu_is_aligned(p, page))
      fail_msg("pvalloc(%zu) = %p is not page aligned", n, p);
    if (pallet_malloc_usable_size(p) < rounded)
      fail_msg("pvalloc(%zu): usable size %zu, less than %zu", n,
               pallet_malloc_usable_size(p), rounded);
    memset(p, 0x6b, rounded);
    pallet_free(p);
  }
}

/* Aligned requests served from blocks that plain mallocs freed into the
 * thread cache (the aligned fast path pops the bin of n rounded up to a
 * multiple of the alignment): every one is aligned and big enough. */
static void test_aligned_reuse(void **state)
{
  enum { K = 8 };
  size_t a, n;
  (void)state;
  for (a = 32; a <= 8192; a *= 2)
    for (n = 1; n <= 300 * KIB; n = n * 3 / 2 + 1) {
      size_t m = (n + a - 1) & ~(a - 1);
      void *q[K];
      int i;
      for (i = 0; i < K; i++) {
        q[i] = pallet_malloc(m);
        assert_non_null(q[i]);
      }
      for (i = 0; i < K; i++)
        pallet_free(q[i]);
      for (i = 0; i < K; i++) {
        q[i] = pallet_aligned_alloc(a, n);
        if (q[i] == NULL || !tu_is_aligned(q[i], a) || pallet_malloc_usable_size(q[i]) < n)
          fail_msg("aligned_alloc(%zu, %zu) = %p after frees of %zu-byte blocks", a, n, q[i], m);
        tu_fill(q[i], n, (uint64_t)i);
      }
      for (i = 0; i < K; i++) {
        assert_true(tu_check(q[i], n, (uint64_t)i) == (size_t)-1);
        pallet_free(q[i]);
      }
    }
  assert_int_equal(pallet_heap_check(), 0);
}

/* Many aligned blocks alive together, mixed with plain ones: no overlap. */
static void test_aligned_mix(void **state)
{
  enum { N = 600 };
  static void *p[N];
  static size_t n[N];
  int i;
  (void)state;
  for (i = 0; i < N; i++) {
    size_t a = (size_t)1 << (i % 17);
    n[i] = (size_t)(i * 37 % 3000) + 1;
    if (i % 3 == 0)
      p[i] = pallet_malloc(n[i]);
    else
      p[i] = pallet_aligned_alloc(a, n[i]);
    assert_non_null(p[i]);
    if (i % 3 != 0)
      assert_true(tu_is_aligned(p[i], a));
    tu_fill(p[i], n[i], (uint64_t)i);
  }
  for (i = 0; i < N; i++)
    assert_true(tu_check(p[i], n[i], (uint64_t)i) == (size_t)-1);
  for (i = 0; i < N; i++)
    pallet_free(p[i]);
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_posix_memalign_valid),
    cmocka_unit_test(test_posix_memalign_invalid),
    cmocka_unit_test(test_aligned_alloc),
    cmocka_unit_test(test_memalign),
    cmocka_unit_test(test_valloc),
    cmocka_unit_test(test_pvalloc),
    cmocka_unit_test(test_aligned_reuse),
    cmocka_unit_test(test_aligned_mix),
  };
  tu_watchdog("api_align", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
