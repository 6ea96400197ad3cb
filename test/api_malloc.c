/*
 * api_malloc.c — API-contract tests for pallet_malloc, pallet_free,
 * pallet_malloc_usable_size, pallet_free_sized, pallet_malloc_trim and
 * pallet_mallinfo2 (glibc semantics: 16-byte alignment for every size,
 * malloc(0) unique, sizes past PTRDIFF_MAX fail with ENOMEM, free keeps
 * errno), and the reuse of freed huge mappings.  Linked against
 * libpallet_core (pallet_ names only), so it also runs under the
 * sanitizers.
 */
#include "testutil.h"

#define MIB ((size_t)1 << 20)

/* Allocates n bytes, checks alignment and usable size, fills the whole
 * usable area with the pattern of `seed`. */
static void *checked_malloc(size_t n, uint64_t seed)
{
  void *p = pallet_malloc(n);
  size_t u;
  if (p == NULL)
    fail_msg("malloc(%zu) returned NULL", n);
  if (!tu_is_aligned(p, 16))
    fail_msg("malloc(%zu) = %p is not 16-byte aligned", n, p);
  u = pallet_malloc_usable_size(p);
  if (u < n)
    fail_msg("malloc_usable_size(malloc(%zu)) = %zu, less than asked", n, u);
  tu_fill(p, u, seed);
  return p;
}

static void verify(void *p, size_t n, uint64_t seed)
{
  size_t u = pallet_malloc_usable_size(p);
  size_t bad;
  if (u < n)
    fail_msg("usable size of a %zu-byte block shrank to %zu", n, u);
  bad = tu_check(p, u, seed);
  if (bad != (size_t)-1)
    fail_msg("block %p (%zu bytes asked, %zu usable) corrupted at offset %zu",
             p, n, u, bad);
}

/* Every size from 0 to 4 KiB, all alive at once: aligned, big enough,
 * writable over the whole usable size, and not overlapping. */
static void test_small_sizes_byte_by_byte(void **state)
{
  enum { N = 4097 };
  static void *blocks[N];
  size_t n;
  (void)state;
  for (n = 0; n < N; n++)
    blocks[n] = checked_malloc(n, n + 1);
  for (n = 0; n < N; n++)
    verify(blocks[n], n, n + 1);
  for (n = 0; n < N; n += 2)
    pallet_free(blocks[n]);
  for (n = 1; n < N; n += 2)
    verify(blocks[n], n, n + 1);
  for (n = 1; n < N; n += 2)
    pallet_free(blocks[n]);
  assert_int_equal(pallet_heap_check(), 0);
}

/* Powers of two from 16 B to 64 MiB and one byte either side; the three
 * of each power live together. */
static void test_powers_of_two(void **state)
{
  int k;
  (void)state;
  for (k = 3; k <= 26; k++) {
    size_t base = (size_t)1 << k;
    size_t sizes[3] = { base - 1, base, base + 1 };
    void *p[3];
    int i;
    for (i = 0; i < 3; i++)
      p[i] = checked_malloc(sizes[i], (uint64_t)k * 4 + (uint64_t)i);
    for (i = 0; i < 3; i++)
      verify(p[i], sizes[i], (uint64_t)k * 4 + (uint64_t)i);
    for (i = 0; i < 3; i++)
      pallet_free(p[i]);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

/* malloc(0) gives a unique, aligned, freeable pointer every time. */
static void test_malloc_zero_unique(void **state)
{
  enum { N = 200 };
  void *p[N];
  int i, j;
  (void)state;
  for (i = 0; i < N; i++) {
    p[i] = pallet_malloc(tu_opaque(0));
    assert_non_null(p[i]);
    assert_true(tu_is_aligned(p[i], 16));
    for (j = 0; j < i; j++)
      assert_ptr_not_equal(p[i], p[j]);
  }
  for (i = 0; i < N; i++)
    pallet_free(p[i]);
}

/* Sizes no allocator can give: past PTRDIFF_MAX (refused by the contract)
 * and just below it / 2^62 (cannot be mapped): NULL and ENOMEM from every
 * allocating function. */
static void test_too_large(void **state)
{
  const size_t sizes[] = {
    (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX + 2, (size_t)PTRDIFF_MAX + 4097,
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16, SIZE_MAX - 4096,
    SIZE_MAX - 4 * MIB, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 4096,
    (size_t)1 << 62, (size_t)1 << 48,
  };
  size_t i;
  void *small = pallet_malloc(32);
  (void)state;
  assert_non_null(small);
  tu_fill(small, 32, 77);
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = tu_opaque(sizes[i]);
    void *p, *out = (void *)&out;
    int r;

#define EXPECT_ENOMEM(call)                                                   \
    do {                                                                      \
      errno = 0;                                                              \
      p = (call);                                                             \
      if (p != NULL || errno != ENOMEM)                                       \
        fail_msg("%s with n = %#zx: got %p, errno %d (want NULL, ENOMEM)",    \
                 #call, n, p, errno);                                         \
    } while (0)

    EXPECT_ENOMEM(pallet_malloc(n));
    EXPECT_ENOMEM(pallet_calloc(1, n));
    EXPECT_ENOMEM(pallet_calloc(n, 1));
    EXPECT_ENOMEM(pallet_realloc(NULL, n));
    EXPECT_ENOMEM(pallet_realloc(small, n));
    EXPECT_ENOMEM(pallet_reallocarray(NULL, n, 1));
    EXPECT_ENOMEM(pallet_reallocarray(small, 1, n));
    EXPECT_ENOMEM(pallet_aligned_alloc(64, n));
    EXPECT_ENOMEM(pallet_aligned_alloc(4096, n));
    EXPECT_ENOMEM(pallet_memalign(16, n));
    EXPECT_ENOMEM(pallet_memalign(MIB, n));
    EXPECT_ENOMEM(pallet_valloc(n));
    EXPECT_ENOMEM(pallet_pvalloc(n));
#undef EXPECT_ENOMEM
    r = pallet_posix_memalign(&out, 16, n);
    assert_int_equal(r, ENOMEM);
    assert_ptr_equal(out, (void *)&out);
    r = pallet_posix_memalign(&out, 2 * MIB, n);
    assert_int_equal(r, ENOMEM);
    assert_ptr_equal(out, (void *)&out);
  }
  /* the block handed to the failed reallocs is intact and still ours */
  assert_true(tu_check(small, 32, 77) == (size_t)-1);
  pallet_free(small);
  assert_int_equal(pallet_heap_check(), 0);
}

/* A request far beyond what the machine could back (four times its
 * memory and swap): with the kernel's default heuristic overcommit (0) or
 * strict accounting (2) the mapping is refused, and so is the request:
 * NULL and ENOMEM, as glibc gives.  (Mapped with MAP_NORESERVE, such a
 * request succeeded under the heuristic, and the program died when it
 * touched the pages.)  Under "always overcommit" (1) the kernel grants
 * any address space: then the request succeeds, and is freed untouched. */
static size_t meminfo_kib(const char *text, const char *key)
{
  const char *at = strstr(text, key);
  return at ? strtoull(at + strlen(key), NULL, 10) : 0;
}

static void test_beyond_memory(void **state)
{
  char text[8192];
  size_t len, kib;
  int mode;
  FILE *f;
  (void)state;
  f = fopen("/proc/sys/vm/overcommit_memory", "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%d", &mode), 1);
  fclose(f);
  f = fopen("/proc/meminfo", "r");
  assert_non_null(f);
  len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = '\0';
  kib = meminfo_kib(text, "MemTotal:") + meminfo_kib(text, "SwapTotal:");
  assert_true(kib > 0);
  size_t n = tu_opaque(kib * 4 * 1024);
  if (n > (size_t)1 << 45)
    n = (size_t)1 << 45; /* well inside the address space */
  void *small = pallet_malloc(48);
  assert_non_null(small);
  tu_fill(small, 48, 5);
  void *got[6];
  errno = 0;
  got[0] = pallet_malloc(n);
  got[1] = pallet_calloc(1, n);
  got[2] = pallet_aligned_alloc(2 * MIB, n);
  got[3] = pallet_memalign(4096, n);
  got[4] = NULL;
  int r = pallet_posix_memalign(&got[4], 64, n);
  got[5] = pallet_realloc(small, n);
  for (int i = 0; i < 6; i++) {
    if (mode == 1) {
      if (got[i] == NULL)
        fail_msg("overcommit 1, request %d of %zu bytes: NULL", i, n);
    } else if (got[i] != NULL) {
      fail_msg("overcommit %d, request %d of %zu bytes (4x memory and swap): %p, want NULL",
               mode, i, n, got[i]);
    }
  }
  if (mode == 1) {
    assert_int_equal(r, 0);
    small = NULL; /* moved by the realloc */
  } else {
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(r, ENOMEM);
    assert_true(tu_check(small, 48, 5) == (size_t)-1);
  }
  for (int i = 0; i < 6; i++)
    pallet_free(got[i]);
  pallet_free(small);
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_usable_size_null(void **state)
{
  (void)state;
  assert_int_equal(pallet_malloc_usable_size(NULL), 0);
}

/* free() keeps errno, whatever it frees (NULL, small, large, huge). */
static void test_free_keeps_errno(void **state)
{
  const size_t sizes[] = { 0, 16, 100, 4000, 64 * 1024, 300 * 1024, MIB,
                           8 * MIB, 64 * MIB };
  size_t i;
  (void)state;
  errno = EILSEQ;
  pallet_free(NULL);
  assert_int_equal(errno, EILSEQ);
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = pallet_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0x5a, sizes[i]);
    errno = EILSEQ;
    pallet_free(p);
    if (errno != EILSEQ)
      fail_msg("free of a %zu-byte block changed errno to %d", sizes[i], errno);
    /* the same with free_sized */
    p = pallet_malloc(sizes[i]);
    assert_non_null(p);
    errno = ENOENT;
    pallet_free_sized(p, sizes[i]);
    if (errno != ENOENT)
      fail_msg("free_sized of a %zu-byte block changed errno to %d", sizes[i], errno);
  }
  /* and when freeing makes a whole span or chunk free */
  {
    enum { N = 2000 };
    static void *p[N];
    int j;
    for (j = 0; j < N; j++)
      assert_non_null(p[j] = pallet_malloc(2048));
    errno = ERANGE;
    for (j = 0; j < N; j++)
      pallet_free(p[j]);
    assert_int_equal(errno, ERANGE);
  }
}

/* free_sized accepts the size asked for and any size up to the usable
 * size. */
static void test_free_sized(void **state)
{
  size_t n;
  (void)state;
  for (n = 1; n < 8 * MIB; n = n * 3 + 1) {
    void *p = pallet_malloc(n);
    size_t u;
    assert_non_null(p);
    pallet_free_sized(p, n);
    p = pallet_malloc(n);
    assert_non_null(p);
    u = pallet_malloc_usable_size(p);
    pallet_free_sized(p, u);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_malloc_trim(void **state)
{
  enum { N = 5000 };
  static void *p[N];
  int i, r;
  (void)state;
  for (i = 0; i < N; i++) {
    p[i] = pallet_malloc((size_t)(i % 50) * 97 + 1);
    assert_non_null(p[i]);
  }
  void *big = pallet_malloc(8 * MIB);
  assert_non_null(big);
  memset(big, 1, 8 * MIB);
  for (i = 0; i < N; i++)
    pallet_free(p[i]);
  pallet_free(big);
  r = pallet_malloc_trim(0);
  assert_true(r == 0 || r == 1);
  r = pallet_malloc_trim(tu_opaque(1 << 20));
  assert_true(r == 0 || r == 1);
  /* the heap still works after a trim */
  for (i = 0; i < N; i++) {
    p[i] = pallet_malloc(100);
    assert_non_null(p[i]);
    memset(p[i], 2, 100);
  }
  for (i = 0; i < N; i++)
    pallet_free(p[i]);
  assert_int_equal(pallet_heap_check(), 0);
}

/* A freed huge block's mapping is reused by the next huge block even when
 * that one is bigger (the mapping grows, in place or by moving its pages)
 * or much smaller (its tail goes back): the cache does not keep it
 * resident beside a fresh mapping.  What was reused reads as zero through
 * calloc. */
static void test_huge_reuse(void **state)
{
  pallet_stats_t st;
  (void)state;
  pallet_malloc_trim(0); /* no cached mapping, no dirty span */
  unsigned char *a = pallet_malloc(6 * MIB);
  assert_non_null(a);
  memset(a, 0xab, 6 * MIB);
  pallet_free(a);
  pallet_stats_get(&st);
  if (st.free_spans < 6 * MIB)
    fail_msg("the freed 6 MiB block was not cached (free_spans %zu)", st.free_spans);
  /* Bigger: the cached 6 MiB grow to 10. */
  unsigned char *b = pallet_calloc(1, 10 * MIB);
  assert_non_null(b);
  pallet_stats_get(&st);
  if (st.free_spans >= 6 * MIB)
    fail_msg("a 10 MiB block left the cached 6 MiB aside (free_spans %zu)", st.free_spans);
  for (size_t i = 0; i < 10 * MIB; i++)
    if (b[i] != 0)
      fail_msg("calloc(10 MiB) over a reused mapping: byte %zu is %#x", i, b[i]);
  memset(b, 0xcd, 10 * MIB);
  pallet_free(b);
  /* Much smaller: the cached 10 MiB shrink to the new block. */
  unsigned char *c = pallet_malloc(4 * MIB + 100);
  assert_non_null(c);
  pallet_stats_get(&st);
  if (st.free_spans >= 4 * MIB)
    fail_msg("a 4 MiB block left the cached 10 MiB aside (free_spans %zu)", st.free_spans);
  assert_true(pallet_malloc_usable_size(c) < 5 * MIB);
  memset(c, 1, 4 * MIB + 100);
  pallet_free(c);
  assert_int_equal(pallet_heap_check(), 0);
}

/* mallinfo2: bytes in use (uordblks + hblkhd) grow by at least 10 MiB
 * while a 10 MiB block is alive and fall back when it is freed. */
static void test_mallinfo2(void **state)
{
  struct pallet_mallinfo2 before, during, after;
  struct pallet_mallinfo small;
  size_t n = 10 * MIB, in_before, in_during, in_after;
  void *p;
  (void)state;
  before = pallet_mallinfo2();
  p = pallet_malloc(n);
  assert_non_null(p);
  memset(p, 0x11, n);
  during = pallet_mallinfo2();
  small = pallet_mallinfo();
  pallet_free(p);
  after = pallet_mallinfo2();
  in_before = before.uordblks + before.hblkhd;
  in_during = during.uordblks + during.hblkhd;
  in_after = after.uordblks + after.hblkhd;
  if (in_during < in_before + n)
    fail_msg("mallinfo2 in-use bytes went from %zu to %zu with 10 MiB more live",
             in_before, in_during);
  if (in_after + n > in_during)
    fail_msg("mallinfo2 in-use bytes went from %zu to %zu after freeing 10 MiB",
             in_during, in_after);
  /* as in glibc, uordblks counts the bytes in use inside the heap (arena)
   * and hblkhd those in separately mapped blocks: each part fits in the
   * memory that holds it, and no block is counted twice */
  if (during.uordblks > during.arena)
    fail_msg("mallinfo2: uordblks %zu > arena %zu (hblkhd %zu): blocks in their "
             "own mappings counted in uordblks as well as in hblkhd?",
             during.uordblks, during.arena, during.hblkhd);
  assert_true(during.arena + during.hblkhd >= n);
  /* the int version says the same (it fits, here) */
  assert_int_equal((size_t)small.uordblks + (size_t)small.hblkhd, in_during);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_small_sizes_byte_by_byte),
    cmocka_unit_test(test_powers_of_two),
    cmocka_unit_test(test_malloc_zero_unique),
    cmocka_unit_test(test_too_large),
    cmocka_unit_test(test_beyond_memory),
    cmocka_unit_test(test_usable_size_null),
    cmocka_unit_test(test_free_keeps_errno),
    cmocka_unit_test(test_free_sized),
    cmocka_unit_test(test_malloc_trim),
    cmocka_unit_test(test_huge_reuse),
    cmocka_unit_test(test_mallinfo2),
  };
  tu_watchdog("api_malloc", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
