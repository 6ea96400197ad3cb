/*
 * unit_chunk.c — unit tests of the chunk map (chunk.h): pl_chunk_lookup
 * at the first, middle and last byte of heap chunks and of huge blocks
 * spanning several 4 MiB slots; NULL for memory pallet does not own
 * (stack, globals, glibc's heap, code, addresses past 2^48); the
 * tombstone a freed huge block leaves; and pl_chunk_map_reserve/set on
 * address ranges the test maps itself (PROT_NONE), including one that
 * crosses a leaf of the radix map.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "chunk.h"
#include "common.h"
#include "large.h"
#include "lifecycle.h"
#include "pallet.h"
#include "span.h"

static int a_global = 42;
static char a_bss[64];

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  return 0;
}

static void test_heap_chunk(void **state) {
  (void)state;
  bool z;
  pl_span_t *s = pl_span_alloc(PL_CHUNK_PAGES, 1, PL_SPAN_LARGE, 0, &z, NULL);
  assert_non_null(s);
  pl_chunk_t *c = s->chunk;
  uintptr_t base = c->base;
  assert_int_equal(base & (PL_CHUNK_SIZE - 1), 0);
  assert_int_equal(c->kind, PL_CHUNK_HEAP);
  assert_int_equal(c->size, PL_CHUNK_SIZE);
  const uintptr_t at[] = {base, base + 1, base + PL_CHUNK_SIZE / 2,
                          base + PL_CHUNK_SIZE - 1};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    assert_ptr_equal(pl_chunk_lookup((void *)at[i]), c);
    assert_int_equal(pl_chunk_page_index((void *)at[i]),
                     (at[i] - base) >> PL_PAGE_SHIFT);
    assert_int_equal(pl_chunk_word_index((void *)at[i]), (at[i] - base) >> PL_PW_SHIFT);
  }
  assert_int_equal(pl_chunk_page_index((void *)(base + PL_CHUNK_SIZE - 1)),
                   PL_CHUNK_PAGES - 1);
  assert_int_equal(pl_chunk_word_index((void *)(base + PL_CHUNK_SIZE - 1)),
                   PL_CHUNK_WORDS - 1);
  assert_int_equal(PL_CHUNK_WORDS, PL_CHUNK_PAGES * PL_PW_PER_PAGE);
  /* The neighbouring slots are not this chunk. */
  assert_ptr_not_equal(pl_chunk_lookup((void *)(base - 1)), c);
  assert_ptr_not_equal(pl_chunk_lookup((void *)(base + PL_CHUNK_SIZE)), c);
  pl_span_free(s);
  assert_int_equal(pl_span_heap_check(), 0);

  /* Blocks from the public API are found the same way. */
  void *p = pallet_malloc(100);
  void *q = pallet_malloc(100000);
  assert_non_null(p);
  assert_non_null(q);
  pl_chunk_t *cp = pl_chunk_lookup(p), *cq = pl_chunk_lookup(q);
  assert_non_null(cp);
  assert_non_null(cq);
  assert_int_equal(cp->kind, PL_CHUNK_HEAP);
  assert_int_equal(cq->kind, PL_CHUNK_HEAP);
  assert_int_equal(cp->base, (uintptr_t)p & ~(PL_CHUNK_SIZE - 1));
  assert_int_equal(cq->base, (uintptr_t)q & ~(PL_CHUNK_SIZE - 1));
  pallet_free(p);
  pallet_free(q);
}

/* Every slot of a huge block, first, middle and last byte; returns the
 * bytes it maps (a reused mapping may be larger than asked for). */
static size_t check_huge(void *p, size_t n, pl_chunk_t *rec) {
  uintptr_t b = (uintptr_t)p;
  assert_non_null(rec);
  assert_int_equal(rec->kind, PL_CHUNK_HUGE);
  assert_int_equal(rec->base, b);
  assert_true(rec->size >= n);
  assert_true(rec->usable >= n && rec->usable <= rec->size);
  size_t slots = (rec->size + PL_CHUNK_SIZE - 1) / PL_CHUNK_SIZE;
  assert_true(slots >= (n + PL_CHUNK_SIZE - 1) / PL_CHUNK_SIZE);
  for (size_t i = 0; i < slots; i++) {
    uintptr_t s = b + i * PL_CHUNK_SIZE;
    assert_ptr_equal(pl_chunk_lookup((void *)s), rec);
    assert_ptr_equal(pl_chunk_lookup((void *)(s + PL_CHUNK_SIZE / 2)), rec);
    assert_ptr_equal(pl_chunk_lookup((void *)(s + PL_CHUNK_SIZE - 1)), rec);
  }
  assert_ptr_equal(pl_chunk_lookup((void *)(b + n - 1)), rec);
  assert_ptr_not_equal(pl_chunk_lookup((void *)(b - 1)), rec);
  assert_ptr_not_equal(pl_chunk_lookup((void *)(b + slots * PL_CHUNK_SIZE)), rec);
  return rec->size;
}

static void check_tombstone(uintptr_t b, size_t n) {
  size_t slots = (n + PL_CHUNK_SIZE - 1) / PL_CHUNK_SIZE;
  for (size_t i = 0; i < slots; i++) {
    pl_chunk_t *t = pl_chunk_lookup((void *)(b + i * PL_CHUNK_SIZE));
    assert_ptr_equal(t, &pl_chunk_tombstone);
    assert_int_equal(t->kind, PL_CHUNK_FREED);
    assert_ptr_equal(pl_chunk_lookup((void *)(b + i * PL_CHUNK_SIZE + PL_CHUNK_SIZE - 1)),
                     &pl_chunk_tombstone);
  }
}

static void test_huge(void **state) {
  (void)state;
  /* Directly through the huge-block layer: 3 slots and a bit. */
  size_t n = 3 * PL_CHUNK_SIZE + 12345;
  void *p = pl_huge_alloc(n, PL_MIN_ALIGN, false);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p & (PL_CHUNK_SIZE - 1), 0);
  pl_chunk_t *rec = pl_chunk_lookup(p);
  size_t pmapped = check_huge(p, n, rec);
  memset(p, 1, n); /* it is all usable */
  pl_huge_free(rec);
  check_tombstone((uintptr_t)p, pmapped);

  /* Through the public API: a block too big for a span. */
  size_t m = 2 * PL_CHUNK_SIZE + 1;
  void *q = pallet_malloc(m);
  assert_non_null(q);
  size_t qmapped = check_huge(q, m, pl_chunk_lookup(q));
  pallet_free(q);
  check_tombstone((uintptr_t)q, qmapped);

  /* Tombstones stay when cached mappings are finally unmapped. */
  pl_huge_cache_purge(0);
  check_tombstone((uintptr_t)q, qmapped);
  check_tombstone((uintptr_t)p, pmapped);

  /* A new huge block over a tombstone replaces it. */
  void *r = pallet_malloc(m);
  assert_non_null(r);
  size_t rmapped = check_huge(r, m, pl_chunk_lookup(r));
  pallet_free(r);
  check_tombstone((uintptr_t)r, rmapped);
  pl_huge_cache_purge(0);
}

static void test_foreign(void **state) {
  (void)state;
  int local = 7;
  void *g_small = malloc(64); /* glibc's heap: pallet_core does not override */
  void *g_big = malloc(8 << 20); /* glibc's own mmap */
  assert_non_null(g_small);
  assert_non_null(g_big);
  assert_null(pl_chunk_lookup(&local));
  assert_null(pl_chunk_lookup(&a_global));
  assert_null(pl_chunk_lookup(a_bss));
  assert_null(pl_chunk_lookup(g_small));
  assert_null(pl_chunk_lookup(g_big));
  assert_null(pl_chunk_lookup((char *)g_big + (4 << 20)));
  assert_null(pl_chunk_lookup((void *)(uintptr_t)&test_foreign));
  assert_null(pl_chunk_lookup(NULL));
  assert_null(pl_chunk_lookup((void *)(uintptr_t)1));
  /* Past the 48-bit user address space. */
  assert_null(pl_chunk_lookup((void *)((uintptr_t)1 << 48)));
  assert_null(pl_chunk_lookup((void *)(((uintptr_t)1 << 48) + PL_CHUNK_SIZE)));
  assert_null(pl_chunk_lookup((void *)(uintptr_t)0xffff800000000000ull));
  assert_null(pl_chunk_lookup((void *)UINTPTR_MAX));
  free(g_small);
  free(g_big);
  (void)a_global;
}

/* PROT_NONE, MAP_NORESERVE: address space only. */
static void *reserve_aligned(size_t size, size_t align, void **raw, size_t *raw_len) {
  *raw_len = size + align;
  *raw = mmap(NULL, *raw_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(*raw != MAP_FAILED);
  return (void *)PL_ALIGN_UP((uintptr_t)*raw, align);
}

static void test_map_synthetic(void **state) {
  (void)state;
  void *raw;
  size_t raw_len;
  const size_t len = 2 * PL_CHUNK_SIZE;
  uintptr_t b = (uintptr_t)reserve_aligned(len, PL_CHUNK_SIZE, &raw, &raw_len);
  static pl_chunk_t fake = {.kind = PL_CHUNK_HUGE};
  fake.base = b;
  fake.size = len;

  assert_null(pl_chunk_lookup((void *)b));
  assert_true(pl_chunk_map_reserve(b, len));
  /* Reserving creates leaves but points no slot anywhere. */
  assert_non_null(pl_chunk_map[b >> (PL_CHUNK_SHIFT + PL_MAP_L2_BITS)]);
  assert_null(pl_chunk_lookup((void *)b));
  assert_null(pl_chunk_lookup((void *)(b + len - 1)));

  pl_chunk_map_set(b, len, &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)b), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE - 1)), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + len - 1)), &fake);
  assert_ptr_not_equal(pl_chunk_lookup((void *)(b - 1)), &fake);
  assert_ptr_not_equal(pl_chunk_lookup((void *)(b + len)), &fake);

  /* A range of one byte touches exactly one slot. */
  pl_chunk_map_set(b + PL_CHUNK_SIZE + 5, 1, NULL);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE - 1)), &fake);
  assert_null(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)));
  /* A range straddling a slot boundary touches both. */
  pl_chunk_map_set(b + PL_CHUNK_SIZE - 1, 2, &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)), &fake);

  pl_chunk_map_set(b, len, NULL);
  assert_null(pl_chunk_lookup((void *)b));
  assert_null(pl_chunk_lookup((void *)(b + len - 1)));
  munmap(raw, raw_len);

  /* The reserve fails for a range that leaves the 48-bit space. */
  assert_false(pl_chunk_map_reserve(((uintptr_t)1 << 48) - PL_CHUNK_SIZE, 2 * PL_CHUNK_SIZE));
  assert_false(pl_chunk_map_reserve((uintptr_t)1 << 48, 1));
}

/* A range across the boundary of two leaves (every 2^35 bytes). */
static void test_map_leaf_boundary(void **state) {
  (void)state;
  const uintptr_t leaf = (uintptr_t)1 << (PL_CHUNK_SHIFT + PL_MAP_L2_BITS);
  const size_t len = 2 * PL_CHUNK_SIZE;
  void *m = MAP_FAILED;
  uintptr_t b = 0;
  /* Look for a free boundary in the middle of the address space. */
  for (uintptr_t cand = 0x100000000000ull; cand < 0x600000000000ull; cand += 37 * leaf) {
    b = cand - PL_CHUNK_SIZE;
    m = mmap((void *)b, len, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (m != MAP_FAILED && (uintptr_t)m == b) break;
    if (m != MAP_FAILED) munmap(m, len);
    m = MAP_FAILED;
  }
  if (m == MAP_FAILED) skip();
  size_t i1 = b >> (PL_CHUNK_SHIFT + PL_MAP_L2_BITS);
  assert_int_equal((b + PL_CHUNK_SIZE) >> (PL_CHUNK_SHIFT + PL_MAP_L2_BITS), i1 + 1);
  static pl_chunk_t fake = {.kind = PL_CHUNK_HUGE};
  assert_true(pl_chunk_map_reserve(b, len));
  assert_non_null(pl_chunk_map[i1]);
  assert_non_null(pl_chunk_map[i1 + 1]);
  assert_ptr_not_equal(pl_chunk_map[i1], pl_chunk_map[i1 + 1]);
  pl_chunk_map_set(b, len, &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)b), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE - 1)), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)), &fake);
  assert_ptr_equal(pl_chunk_lookup((void *)(b + len - 1)), &fake);
  /* The last slot of the first leaf and the first of the second are
   * distinct entries: clearing one leaves the other. */
  pl_chunk_map_set(b, 1, NULL);
  assert_null(pl_chunk_lookup((void *)b));
  assert_ptr_equal(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)), &fake);
  pl_chunk_map_set(b, len, NULL);
  assert_null(pl_chunk_lookup((void *)(b + PL_CHUNK_SIZE)));
  munmap(m, len);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* The huge-block test goes last: once a huge mapping is unmapped,
       * its slots keep the tombstone while glibc or a test may map other
       * memory at the same addresses. */
      cmocka_unit_test(test_foreign),
      cmocka_unit_test(test_map_synthetic),
      cmocka_unit_test(test_map_leaf_boundary),
      cmocka_unit_test(test_heap_chunk),
      cmocka_unit_test(test_huge),
  };
  return cmocka_run_group_tests_name("unit_chunk", tests, setup, NULL);
}
