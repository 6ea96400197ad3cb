/*
 * unit_span.c — unit tests of the span heap (span.h): the page map of
 * every page after each allocation and free, coalescing with no, left,
 * right and both neighbours free (also at the first and last pages of a
 * chunk), aligned allocation, shrinking and growing in place, purging
 * (flags, zeroed memory, unmapping of wholly free chunks) and the totals.
 *
 * The span heap is process-wide, so each test takes a whole chunk for
 * itself (a 512-page span) and carves it; spans the heap hands out from
 * elsewhere while a test claims pages of its own chunk are held and given
 * back afterwards.  pl_span_heap_check() runs after every step.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chunk.h"
#include "pallet.h"
#include "common.h"
#include "lifecycle.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"
#include "testutil.h"

#define NPAGES PL_CHUNK_PAGES

static size_t saved_dirty_min;
static unsigned saved_dirty_shift;

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  pl_span_purge_mode = PL_PURGE_DONTNEED;
  /* No purge on free unless a test asks for one: the structural tests
   * look at the flags of the spans they free. */
  saved_dirty_min = pl_span_dirty_min;
  saved_dirty_shift = pl_span_dirty_shift;
  pl_span_dirty_min = (size_t)1 << 46;
  /* The base purge rules, without the recent peak's room, unless a test
   * asks for it (test_peak_room). */
  pl_span_peak_ms = 0;
  return 0;
}

static size_t page_of(const pl_span_t *s) {
  return (s->start - s->chunk->base) >> PL_PAGE_SHIFT;
}

static void heap_ok(void) { assert_int_equal(pl_span_heap_check(), 0); }

/* Is page word k2 of s's chunk a cold word of s (a small-block span)? */
static bool word_is_cold(const pl_span_t *s, size_t k2) {
  size_t kk = k2 - page_of(s) * PL_PW_PER_PAGE; /* the word's index in the span */
  return s->state == PL_SPAN_SMALL && kk < 64 && ((s->cold_words >> kk) & 1);
}

/* The page map entries of every page of s, checked independently of
 * pl_span_heap_check: chunk lookup, page_span, page_info and pl_span_of,
 * at the first, middle and last byte of each page. */
static void check_span_map(const pl_span_t *s) {
  pl_chunk_t *c = s->chunk;
  assert_non_null(c);
  assert_int_equal(c->kind, PL_CHUNK_HEAP);
  assert_true(s->npages >= 1 && page_of(s) + s->npages <= NPAGES);
  /* Written out here rather than through pl_pw_make, to check it. */
  uint32_t want_neg = 0, want_bin = 0;
  if (s->state == PL_SPAN_SMALL) {
    want_neg = (uint32_t)(0x100000000ull - (s->start & 0xffffffffu));
    want_bin = (uint32_t)s->cls * 32;
  }
  /* A chunk in the arena keeps its page words in the arena's array. */
  if (c->base - pl_arena_base < pl_arena_size) {
    assert_ptr_equal(c->page_info, &pl_arena_info[(c->base - pl_arena_base) >> PL_PW_SHIFT]);
    assert_ptr_equal(c->page_span, &pl_arena_spans[(c->base - pl_arena_base) >> PL_PAGE_SHIFT]);
  } else {
    assert_ptr_equal(c->page_info, c->own_info);
    assert_ptr_equal(c->page_span, c->own_span);
  }
  for (size_t p = page_of(s); p < page_of(s) + s->npages; p++) {
    uintptr_t a = c->base + p * PL_PAGE_SIZE;
    /* Every page of a small-block span names it in the page map; of any
     * other span, its first and last page do, and pl_span_find finds it
     * from any page. */
    bool named = s->state == PL_SPAN_SMALL || p == page_of(s) || p == page_of(s) + s->npages - 1;
    static const size_t at[] = {0, PL_PAGE_SIZE / 2, PL_PAGE_SIZE - 1};
    for (size_t k = 0; k < 3; k++) {
      const void *q = (const void *)(a + at[k]);
      if (pl_chunk_lookup(q) != c) fail_msg("page %zu: lookup is not the chunk", p);
      if (pl_chunk_page_index(q) != p) fail_msg("page %zu: page index wrong", p);
      if (named && pl_span_of(q) != s) fail_msg("page %zu: pl_span_of is not the span", p);
      pl_span_t found;
      if (!pl_span_find(q, &found) || found.start != s->start || found.npages != s->npages ||
          found.state != s->state)
        fail_msg("page %zu: pl_span_find does not find the span", p);
      /* What free() decodes: the span offset of q (off a warm word). */
      size_t k2 = pl_chunk_word_index(q);
      if (k2 != p * PL_PW_PER_PAGE + at[k] / ((size_t)1 << PL_PW_SHIFT))
        fail_msg("page %zu: word index wrong", p);
      if (s->state == PL_SPAN_SMALL && !word_is_cold(s, k2) &&
          pl_pw_span_offset(c->page_info[k2], q) != a + at[k] - s->start)
        fail_msg("page %zu: span offset wrong", p);
    }
    if (named && c->page_span[p] != s) fail_msg("page %zu: page_span is not the span", p);
    /* Free pages keep {0, 0} or, if flagged, a ghost word (bin 0); a cold
     * word of a small-block span (span.h) is {0, 0}. */
    bool free_span = s->state == PL_SPAN_FREE || s->state == PL_SPAN_BUSY;
    bool ghosts = free_span && (s->flags & PL_SPAN_GHOST);
    for (size_t k2 = p * PL_PW_PER_PAGE; k2 < (p + 1) * PL_PW_PER_PAGE; k2++) {
      bool cold = word_is_cold(s, k2);
      pl_pageword_t w = c->page_info[k2];
      if (ghosts ? w.bin != 0
          : cold ? w.span_neg != 0 || w.bin != 0
                 : w.span_neg != want_neg || w.bin != want_bin)
        fail_msg("page %zu word %zu: page word {0x%x, 0x%x}, want {0x%x, 0x%x}%s", p, k2,
                 w.span_neg, w.bin, want_neg, want_bin, cold ? " (or {0, 0}: cold)" : "");
      if (s->state == PL_SPAN_SMALL && !cold) assert_int_equal(pl_pw_class(w), s->cls);
    }
  }
}

/* Walks chunk c page by page: its spans tile it, each one's map is right,
 * and no two free spans touch. */
static void check_chunk(pl_chunk_t *c) {
  size_t p = 0;
  bool prev_free = false;
  while (p < NPAGES) {
    pl_span_t *s = c->page_span[p];
    assert_non_null(s);
    if (s->chunk != c || page_of(s) != p)
      fail_msg("span at page %zu does not start there", p);
    assert_true(s->state == PL_SPAN_FREE || s->state == PL_SPAN_SMALL ||
                s->state == PL_SPAN_LARGE);
    check_span_map(s);
    if (prev_free && s->state == PL_SPAN_FREE)
      fail_msg("free spans touch at page %zu", p);
    prev_free = s->state == PL_SPAN_FREE;
    p += s->npages;
  }
  assert_int_equal(p, NPAGES);
}

/* The free span of chunk c starting at page first has npages pages. */
static pl_span_t *expect_free(pl_chunk_t *c, size_t first, size_t npages) {
  pl_span_t *s = c->page_span[first];
  assert_non_null(s);
  if (s->state != PL_SPAN_FREE || page_of(s) != first || s->npages != npages)
    fail_msg("expected a free span at page %zu of %zu pages; found state %u "
             "at page %zu of %u pages",
             first, npages, s->state, page_of(s), s->npages);
  check_chunk(c);
  return s;
}

static pl_span_t *alloc_span(size_t npages, size_t align, int state, unsigned cls,
                             bool *zeroed) {
  bool z = false;
  pl_span_t *s = pl_span_alloc(npages, align, state, cls, &z, NULL);
  assert_non_null(s);
  assert_int_equal(s->npages, npages);
  assert_int_equal(s->state, state);
  check_span_map(s);
  heap_ok();
  if (state == PL_SPAN_SMALL) {
    /* A small-block span starts cold (page words {0, 0}, checked above)
     * where its blocks start; the central lists warm those words as they
     * hand out blocks: here all at once. */
    assert_int_equal(s->cls, cls);
    size_t nw = npages * PL_PW_PER_PAGE;
    assert_true(s->cold_words ==
                (pl_low_bits64(nw) & ~pl_class_inner_words[cls]));
    pl_span_set_cold(s, s->cold_words, false);
    assert_true(s->cold_words == 0);
    check_span_map(s);
    heap_ok();
  }
  if (zeroed) *zeroed = z;
  return s;
}

/* A chunk of our own: a 512-page LARGE span covering all of it. */
static pl_span_t *whole_chunk(void) {
  pl_span_t *s = alloc_span(NPAGES, 1, PL_SPAN_LARGE, 0, NULL);
  assert_true(s->start == s->chunk->base);
  assert_true((s->start & (PL_CHUNK_SIZE - 1)) == 0);
  check_chunk(s->chunk);
  return s;
}

/* Allocates npages until the span handed out is the one at page first of
 * chunk c (which the caller has left free); spans from elsewhere are held
 * meanwhile and freed afterwards. */
static pl_span_t *claim(pl_chunk_t *c, size_t first, size_t npages, int state,
                        unsigned cls, bool *zeroed) {
  pl_span_t *held[256];
  size_t nheld = 0;
  pl_span_t *s;
  for (;;) {
    s = alloc_span(npages, 1, state, cls, zeroed);
    if (s->chunk == c && page_of(s) == first) break;
    if (s->chunk == c && page_of(s) < first + npages && page_of(s) + npages > first)
      fail_msg("claim: got pages %zu.. of our chunk, wanted %zu..", page_of(s), first);
    assert_true(nheld < 256);
    held[nheld++] = s;
  }
  for (size_t i = 0; i < nheld; i++) {
    pl_span_free(held[i]);
    heap_ok();
  }
  return s;
}

/* The layout of the coalescing tests:
 *   [A 10][B 20 SMALL][C 30][D 40 SMALL][E 412], pages 0..511 of a chunk. */
enum { NLAYOUT = 5 };
static const size_t lay_len[NLAYOUT] = {10, 20, 30, 40, 412};
static const size_t lay_first[NLAYOUT] = {0, 10, 30, 60, 100};

static pl_chunk_t *carve(pl_span_t *sp[NLAYOUT]) {
  pl_span_t *whole = whole_chunk();
  pl_chunk_t *c = whole->chunk;
  pl_span_free(whole);
  heap_ok();
  expect_free(c, 0, NPAGES);
  /* The cls of the SMALL spans: two arbitrary classes. */
  const unsigned cls_b = 3, cls_d = PL_NCLASSES - 1;
  for (size_t i = 0; i < NLAYOUT; i++) {
    int st = (i == 1 || i == 3) ? PL_SPAN_SMALL : PL_SPAN_LARGE;
    unsigned cls = i == 1 ? cls_b : i == 3 ? cls_d : 0;
    sp[i] = claim(c, lay_first[i], lay_len[i], st, cls, NULL);
    if (i + 1 < NLAYOUT) expect_free(c, lay_first[i + 1], NPAGES - lay_first[i + 1]);
  }
  check_chunk(c);
  return c;
}

/* Frees the layout's spans in the order given, checking after each step;
 * then the span covering the last one freed must be [first, first+len). */
static void coalesce_case(const char *name, const int *order, size_t n,
                          size_t first, size_t len) {
  pl_span_t *sp[NLAYOUT];
  bool freed[NLAYOUT] = {false};
  pl_chunk_t *c = carve(sp);
  size_t last = 0;
  for (size_t i = 0; i < n; i++) {
    last = (size_t)order[i];
    pl_span_free(sp[last]);
    freed[last] = true;
    heap_ok();
    check_chunk(c);
    /* The page the freed span covered is now in a free span. */
    pl_span_t found;
    assert_true(pl_span_find((void *)(c->base + lay_first[last] * PL_PAGE_SIZE), &found));
    assert_int_equal(found.state, PL_SPAN_FREE);
  }
  pl_span_t found;
  assert_true(pl_span_find((void *)(c->base + lay_first[last] * PL_PAGE_SIZE), &found));
  pl_span_t *f = c->page_span[(found.start - c->base) >> PL_PAGE_SHIFT];
  if (page_of(f) != first || f->npages != len)
    fail_msg("%s: free span is pages [%zu, +%u), want [%zu, +%zu)", name,
             page_of(f), f->npages, first, len);
  expect_free(c, first, len);
  /* Its flags: freed spans are dirty and not known to be zero. */
  assert_true(f->flags & PL_SPAN_DIRTY);
  assert_false(f->flags & PL_SPAN_ZERO);
  /* Give the rest back: the chunk ends up one free span. */
  for (size_t i = 0; i < NLAYOUT; i++)
    if (!freed[i]) {
      pl_span_free(sp[i]);
      heap_ok();
      check_chunk(c);
    }
  expect_free(c, 0, NPAGES);
}

static void test_coalesce_none(void **state) {
  (void)state;
  static const int o[] = {2};
  coalesce_case("none", o, 1, 30, 30);
}
static void test_coalesce_left(void **state) {
  (void)state;
  static const int o[] = {1, 2};
  coalesce_case("left", o, 2, 10, 50);
}
static void test_coalesce_right(void **state) {
  (void)state;
  static const int o[] = {3, 2};
  coalesce_case("right", o, 2, 30, 70);
}
static void test_coalesce_both(void **state) {
  (void)state;
  static const int o[] = {1, 3, 2};
  coalesce_case("both", o, 3, 10, 90);
}
static void test_coalesce_first_page(void **state) {
  (void)state;
  static const int alone[] = {0};
  coalesce_case("first, alone", alone, 1, 0, 10);
  static const int right[] = {1, 0};
  coalesce_case("first, right free", right, 2, 0, 30);
}
static void test_coalesce_last_page(void **state) {
  (void)state;
  static const int alone[] = {4};
  coalesce_case("last, alone", alone, 1, 100, 412);
  static const int left[] = {3, 4};
  coalesce_case("last, left free", left, 2, 60, 452);
}
static void test_coalesce_whole(void **state) {
  (void)state;
  static const int o1[] = {0, 2, 4, 1, 3};
  coalesce_case("all, odd first", o1, 5, 0, NPAGES);
  static const int o2[] = {4, 3, 2, 1, 0};
  coalesce_case("all, right to left", o2, 5, 0, NPAGES);
}

/* Spans of every length in a row, with the page map checked each time. */
static void test_lengths(void **state) {
  (void)state;
  static const size_t lens[] = {1, 2, 3, 7, 8, 31, 64, 100, 255, 256, 511, 512};
  pl_span_t *sp[sizeof lens / sizeof lens[0]];
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    int st = i % 2 ? PL_SPAN_SMALL : PL_SPAN_LARGE;
    unsigned cls = i % 2 ? (unsigned)(1 + i * 7 % PL_NCLASSES) : 0;
    sp[i] = alloc_span(lens[i], 1, st, cls, NULL);
    check_chunk(sp[i]->chunk);
  }
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    pl_chunk_t *c = sp[i]->chunk;
    pl_span_free(sp[i]);
    heap_ok();
    check_chunk(c);
  }
}

static void free_again(void *p) { pallet_free(p); }

/* A span of small blocks freed to the heap leaves ghost words (and the
 * free span the GHOST flag); a large block carved there clears them, and
 * once it is freed a second free of it is a double free, not a stray
 * pointer into a freed span of class cls.  The inner pages of the large
 * and free spans are found through pl_span_find (check_chunk). */
static void test_large_over_ghosts(void **state) {
  (void)state;
  pl_span_t *whole = whole_chunk();
  pl_chunk_t *c = whole->chunk;
  pl_span_free(whole);
  expect_free(c, 0, NPAGES);
  /* A class whose blocks do not start at page 1 of a span. */
  unsigned cls = pl_size_class(48);
  assert_true(PL_PAGE_SIZE % pl_class_info[cls].size != 0);
  pl_span_t *sm = claim(c, 0, 20, PL_SPAN_SMALL, cls, NULL);
  pl_span_free(sm);
  heap_ok();
  pl_span_t *f = expect_free(c, 0, NPAGES);
  assert_true(f->flags & PL_SPAN_GHOST);
  assert_int_equal(pl_pw_ghost_class(c->page_info[3 * PL_PW_PER_PAGE]), cls);
  assert_int_equal(pl_pw_ghost_class(c->page_info[3 * PL_PW_PER_PAGE + 1]), cls);
  pl_span_t *head = claim(c, 0, 1, PL_SPAN_LARGE, 0, NULL);
  pl_span_t *big = claim(c, 1, 6, PL_SPAN_LARGE, 0, NULL);
  for (size_t k = 1 * PL_PW_PER_PAGE; k < 7 * PL_PW_PER_PAGE; k++) {
    assert_int_equal(c->page_info[k].bin, 0);
    assert_int_equal(c->page_info[k].span_neg, 0);
  }
  big->large_size = 6 * PL_PAGE_SIZE;
  void *blk = (void *)big->start;
  memset(blk, 1, big->large_size);
  tu_expect_abort("interior pointer of a large block", free_again, (char *)blk + PL_PAGE_SIZE,
                  "invalid pointer");
  pallet_free(blk);
  /* Parked by this thread until its next large malloc or free (large.h). */
  tu_expect_abort("large block freed twice while parked", free_again, blk, "double free");
  pallet_malloc_trim(0); /* gives it back */
  heap_ok();
  check_chunk(c);
  tu_expect_abort("large block freed twice over old ghosts", free_again, blk, "double free");
  pl_span_free(head);
  heap_ok();
  expect_free(c, 0, NPAGES);
}

static void test_aligned(void **state) {
  (void)state;
  for (size_t align = 2; align <= 256; align *= 2) {
    /* A chunk whose free part starts on page 1: misaligned for every
     * alignment, so the heap must leave a free head in front. */
    pl_span_t *pin = whole_chunk();
    pl_chunk_t *c = pin->chunk;
    pl_span_shrink(pin, 1);
    heap_ok();
    expect_free(c, 1, NPAGES - 1);
    size_t sizes[3] = {1, align, align / 2 + 3};
    pl_span_t *got[3];
    for (size_t k = 0; k < 3; k++) {
      got[k] = alloc_span(sizes[k], align, PL_SPAN_LARGE, 0, NULL);
      if ((got[k]->start & (align * PL_PAGE_SIZE - 1)) != 0)
        fail_msg("align %zu pages: span at %#lx is misaligned", align,
                 (unsigned long)got[k]->start);
      check_chunk(got[k]->chunk);
    }
    for (size_t k = 0; k < 3; k++) {
      pl_chunk_t *gc = got[k]->chunk;
      pl_span_free(got[k]);
      heap_ok();
      check_chunk(gc);
    }
    pl_span_free(pin);
    heap_ok();
    expect_free(c, 0, NPAGES);
  }
  /* The largest request that can be aligned in a chunk, and one past it. */
  pl_span_t *pin = whole_chunk();
  pl_chunk_t *c = pin->chunk;
  pl_span_shrink(pin, 1);
  pl_span_t *big = alloc_span(NPAGES / 2 + 1, NPAGES / 2, PL_SPAN_LARGE, 0, NULL);
  assert_true((big->start & (NPAGES / 2 * PL_PAGE_SIZE - 1)) == 0);
  pl_span_free(big);
  heap_ok();
  bool z;
  assert_null(pl_span_alloc(NPAGES / 2 + 2 + NPAGES / 4, NPAGES / 2, PL_SPAN_LARGE, 0, &z, NULL));
  heap_ok();
  pl_span_free(pin);
  heap_ok();
  check_chunk(c);
}

static void test_shrink_grow(void **state) {
  (void)state;
  pl_span_t *s = whole_chunk();
  pl_chunk_t *c = s->chunk;

  pl_span_shrink(s, 100);
  heap_ok();
  assert_int_equal(s->npages, 100);
  check_span_map(s);
  expect_free(c, 100, NPAGES - 100);

  pl_span_shrink(s, 60); /* the freed tail merges with the free span */
  heap_ok();
  assert_int_equal(s->npages, 60);
  expect_free(c, 60, NPAGES - 60);

  pl_span_shrink(s, 60); /* no-ops */
  pl_span_shrink(s, 61);
  assert_int_equal(s->npages, 60);
  heap_ok();
  expect_free(c, 60, NPAGES - 60);

  assert_true(pl_span_grow(s, 200));
  heap_ok();
  assert_int_equal(s->npages, 200);
  expect_free(c, 200, NPAGES - 200);

  assert_true(pl_span_grow(s, NPAGES)); /* takes the whole free span */
  heap_ok();
  assert_int_equal(s->npages, NPAGES);
  check_chunk(c);
  assert_false(pl_span_grow(s, NPAGES)); /* at the chunk's end */

  /* An allocated right neighbour blocks growth. */
  pl_span_shrink(s, 300);
  pl_span_t *x = claim(c, 300, 100, PL_SPAN_LARGE, 0, NULL);
  expect_free(c, 400, NPAGES - 400);
  assert_false(pl_span_grow(s, 301));
  assert_int_equal(s->npages, 300);
  heap_ok();
  check_chunk(c);

  /* A free neighbour too short blocks it; one exactly long enough not. */
  pl_span_free(x);
  heap_ok();
  expect_free(c, 300, NPAGES - 300);
  /* The heap splits free spans at their front: hold pages 300..479 to
   * claim the tail, then let them go. */
  pl_span_t *tmp = claim(c, 300, 180, PL_SPAN_LARGE, 0, NULL);
  pl_span_t *y = claim(c, 480, NPAGES - 480, PL_SPAN_LARGE, 0, NULL);
  pl_span_free(tmp);
  heap_ok();
  expect_free(c, 300, 180);
  assert_false(pl_span_grow(s, 481));
  assert_int_equal(s->npages, 300);
  heap_ok();
  expect_free(c, 300, 180);
  assert_true(pl_span_grow(s, 480));
  heap_ok();
  assert_int_equal(s->npages, 480);
  check_chunk(c);

  pl_span_free(s);
  pl_span_free(y);
  heap_ok();
  expect_free(c, 0, NPAGES);
}

static void check_totals_consistent(const pl_span_totals_t *t) {
  assert_int_equal(t->mapped, t->chunks * PL_CHUNK_SIZE);
  assert_int_equal(t->free_bytes + t->small_bytes + t->large_bytes, t->mapped);
  assert_int_equal(t->dirty_bytes + t->purged_bytes, t->free_bytes);
  assert_true(t->retained_chunks <= t->chunks);
  assert_int_equal(pl_span_dirty_bytes(), t->dirty_bytes);
}

static void test_purge(void **state) {
  (void)state;
  pl_span_t *s = whole_chunk();
  pl_chunk_t *c = s->chunk;
  memset((void *)s->start, 0xa5, PL_CHUNK_SIZE);
  pl_span_shrink(s, 100);
  pl_span_t *f = expect_free(c, 100, NPAGES - 100);
  assert_true(f->flags & PL_SPAN_DIRTY);
  pl_span_totals_t t;
  pl_span_totals(&t);
  check_totals_consistent(&t);
  assert_true(t.dirty_bytes >= (NPAGES - 100) * PL_PAGE_SIZE);

  size_t released = pl_span_purge(0, false, 0);
  heap_ok();
  assert_true(released >= (NPAGES - 100) * PL_PAGE_SIZE);
  f = expect_free(c, 100, NPAGES - 100);
  assert_int_equal(f->flags, PL_SPAN_ZERO);
  uintptr_t tail = c->base + 100 * PL_PAGE_SIZE;
  size_t tail_bytes = (NPAGES - 100) * PL_PAGE_SIZE;
  assert_int_equal(pl_os_resident((void *)tail, tail_bytes), 0);
  pl_span_totals(&t);
  check_totals_consistent(&t);
  assert_int_equal(t.dirty_bytes, 0);
  assert_int_equal(pl_span_dirty_bytes(), 0);
  /* Every free span of our chunk is clean. */
  for (size_t p = 0; p < NPAGES; p += c->page_span[p]->npages)
    if (c->page_span[p]->state == PL_SPAN_FREE)
      assert_int_equal(c->page_span[p]->flags, PL_SPAN_ZERO);
  /* The purged pages read zero; the span still allocated kept its bytes. */
  for (size_t i = 0; i < tail_bytes; i += 64)
    if (((volatile unsigned char *)tail)[i] != 0)
      fail_msg("purged byte at offset %zu is not zero", i);
  for (size_t i = 0; i < 100 * PL_PAGE_SIZE; i += 4096)
    assert_int_equal(((unsigned char *)s->start)[i], 0xa5);

  /* A span carved from purged pages is known to be zero. */
  bool zeroed = false;
  pl_span_t *z = claim(c, 100, 50, PL_SPAN_LARGE, 0, &zeroed);
  assert_true(zeroed);
  pl_span_free(z);
  heap_ok();
  f = expect_free(c, 100, NPAGES - 100);
  assert_true(f->flags & PL_SPAN_DIRTY); /* dirty + clean = dirty */
  assert_false(f->flags & PL_SPAN_ZERO);

  /* Dirty s next to the free span: the merge is dirty, not zero. */
  pl_span_free(s);
  heap_ok();
  f = expect_free(c, 0, NPAGES);
  assert_true(f->flags & PL_SPAN_DIRTY);
  assert_false(f->flags & PL_SPAN_ZERO);
  pl_span_t *w = claim(c, 0, NPAGES, PL_SPAN_LARGE, 0, &zeroed);
  assert_false(zeroed);
  pl_span_free(w);
  pl_span_purge(0, false, 0);
  heap_ok();
  f = expect_free(c, 0, NPAGES);
  assert_int_equal(f->flags, PL_SPAN_ZERO);
}

/* A free span counts as dirty only the pages that were freed into it: a
 * freed block next to clean pages does not make them dirty, and pages
 * carved off the front take the dirty ones first. */
static void test_dirty_count(void **state) {
  (void)state;
  pl_span_t *s = whole_chunk();
  pl_chunk_t *c = s->chunk;
  pl_span_free(s);
  pl_span_purge(0, false, 0);
  heap_ok();
  assert_int_equal(expect_free(c, 0, NPAGES)->ndirty, 0);
  bool zeroed;
  pl_span_t *a = claim(c, 0, 40, PL_SPAN_LARGE, 0, &zeroed);
  assert_true(zeroed);
  assert_int_equal(expect_free(c, 40, NPAGES - 40)->ndirty, 0);
  pl_span_free(a);
  heap_ok();
  pl_span_t *f = expect_free(c, 0, NPAGES);
  assert_true(f->flags & PL_SPAN_DIRTY);
  assert_int_equal(f->ndirty, 40); /* not NPAGES */
  pl_span_t *b = claim(c, 0, 30, PL_SPAN_LARGE, 0, &zeroed);
  assert_false(zeroed);
  assert_int_equal(expect_free(c, 30, NPAGES - 30)->ndirty, 10);
  heap_ok();
  pl_span_free(b);
  heap_ok();
  assert_int_equal(expect_free(c, 0, NPAGES)->ndirty, 40);
  pl_span_totals_t t;
  pl_span_totals(&t);
  check_totals_consistent(&t);
  pl_span_purge(0, false, 0);
  heap_ok();
  assert_int_equal(expect_free(c, 0, NPAGES)->ndirty, 0);
}

/* A merged free span takes the age of the part with more dirty pages: a
 * big span of old dirty memory that absorbs a block freed just now stays
 * old (so the decay still purges it), and a clean span that absorbs a
 * fresh dirty block takes the block's age (so it is not purged at once). */
static void test_merge_age(void **state) {
  (void)state;
  pl_span_t *s = whole_chunk();
  pl_chunk_t *c = s->chunk;
  pl_span_free(s);
  bool zeroed;
  pl_span_t *b = claim(c, 0, 4, PL_SPAN_LARGE, 0, &zeroed);
  pl_span_t *rest = expect_free(c, 4, NPAGES - 4);
  assert_int_equal(rest->ndirty, NPAGES - 4);
  rest->free_since -= 5000; /* freed 5 s ago */
  uint64_t old = rest->free_since;
  pl_span_free(b);
  heap_ok();
  pl_span_t *f = expect_free(c, 0, NPAGES);
  if (f->free_since != old)
    fail_msg("old dirty span merged with a fresh block: free_since %llu, want %llu",
             (unsigned long long)f->free_since, (unsigned long long)old);
  /* Now the big part clean and old, the fresh block dirty. */
  pl_span_purge(0, false, 0);
  b = claim(c, 0, 4, PL_SPAN_LARGE, 0, &zeroed);
  rest = expect_free(c, 4, NPAGES - 4);
  assert_int_equal(rest->ndirty, 0);
  rest->free_since -= 5000;
  old = rest->free_since;
  pl_span_free(b);
  heap_ok();
  f = expect_free(c, 0, NPAGES);
  assert_int_equal(f->ndirty, 4);
  if (f->free_since == old) fail_msg("a fresh dirty block merged into an old clean span took its age");
}

/* Freeing beyond the dirty limit purges at once, down to half of it. */
static void test_purge_on_free(void **state) {
  (void)state;
  pl_span_t *s = whole_chunk();
  pl_chunk_t *c = s->chunk;
  pl_span_purge(0, false, 0);
  size_t limit = 64 * PL_PAGE_SIZE;
  pl_span_dirty_min = limit;
  pl_span_dirty_shift = 60; /* no share of the active pages */
  pl_span_free(s);
  size_t dirty = pl_span_dirty_bytes();
  pl_span_dirty_min = (size_t)1 << 46;
  pl_span_dirty_shift = saved_dirty_shift;
  heap_ok();
  check_chunk(c);
  if (dirty > limit / 2)
    fail_msg("after a free over the dirty limit %zu, %zu bytes stay dirty", limit, dirty);
  pl_span_totals_t t;
  pl_span_totals(&t);
  check_totals_consistent(&t);
}

/* Within the window of the recent peak of active pages, a span freed
 * past the base limit stays dirty: what was freed since the peak is kept,
 * up to PEAK_ROOM_FLOORS (16) times the dirty floor, and the at-once
 * purge leaves that much.  Past the cap, it purges again. */
static void test_peak_room(void **state) {
  (void)state;
  enum { LIMIT = 16, BIG = 200 }; /* pages: the floor, and a span 12.5 floors big */
  pl_span_purge(0, false, 0);
  pl_span_t *s = alloc_span(BIG, 1, PL_SPAN_LARGE, 0, NULL); /* the peak: at least BIG pages */
  pl_span_t *whole = whole_chunk();
  pl_span_dirty_min = LIMIT * PL_PAGE_SIZE;
  pl_span_dirty_shift = 60; /* no share of the active pages */
  pl_span_peak_ms = 60000;
  pl_span_free(s);
  size_t kept = pl_span_dirty_bytes();
  /* A whole chunk, four times the room's cap: freed, it goes past the
   * room, and the purge leaves the base limit and the capped room. */
  pl_span_free(whole);
  size_t after_cap = pl_span_dirty_bytes();
  pl_span_peak_ms = 0;
  pl_span_dirty_min = (size_t)1 << 46;
  pl_span_dirty_shift = saved_dirty_shift;
  pl_span_purge(0, false, 0);
  heap_ok();
  if (kept < (size_t)BIG * PL_PAGE_SIZE)
    fail_msg("a span of %d pages freed within the peak's window (base limit %d pages): "
             "%zu bytes stay dirty, want all of it", BIG, LIMIT, kept);
  if (after_cap > (size_t)(LIMIT + 16 * LIMIT) * PL_PAGE_SIZE)
    fail_msg("past the room's cap (%d pages) and the base limit (%d pages), %zu bytes stay dirty",
             16 * LIMIT, LIMIT, after_cap);
}

/* Past the dirty limit, small spans coming back purge at once only once
 * they add up to half the limit since the last purge. */
static void test_purge_on_small_free(void **state) {
  (void)state;
  enum { LIMIT = 64, NSMALL = LIMIT / 2 + 1 };
  unsigned cls = pl_size_class(64);
  assert_true(pl_class_info[cls].nblocks >= 8 && pl_class_info[cls].pages == 1);
  pl_span_t *big = alloc_span(LIMIT + 36, 1, PL_SPAN_LARGE, 0, NULL);
  pl_span_t *sm[NSMALL];
  for (int i = 0; i < NSMALL; i++) sm[i] = alloc_span(1, 1, PL_SPAN_SMALL, cls, NULL);
  pl_span_purge(0, false, 0); /* nothing dirty, and the count starts again */
  assert_int_equal(pl_span_dirty_bytes(), 0);
  pl_span_dirty_min = LIMIT * PL_PAGE_SIZE;
  pl_span_dirty_shift = 60; /* no share of the active pages */
  pl_span_free(big); /* 100 dirty pages: past the limit, but young */
  size_t after_big = pl_span_dirty_bytes();
  size_t purged_at = 0;
  for (int i = 0; i < NSMALL; i++) {
    pl_span_free(sm[i]);
    if (purged_at == 0 && pl_span_dirty_bytes() < after_big) purged_at = (size_t)i + 1;
  }
  size_t dirty = pl_span_dirty_bytes();
  pl_span_dirty_min = (size_t)1 << 46;
  pl_span_dirty_shift = saved_dirty_shift;
  heap_ok();
  assert_int_equal(after_big, (LIMIT + 36) * PL_PAGE_SIZE);
  /* The first LIMIT / 2 small spans do not purge; the next one does, down
   * to a quarter of the limit. */
  if (purged_at != NSMALL)
    fail_msg("the purge came with small span %zu, not %d", purged_at, NSMALL);
  assert_true(dirty <= LIMIT / 4 * PL_PAGE_SIZE);
}

/* While another thread is busy in the heap (the hook says so), frees past
 * the dirty limit purge only what has been free for a while: a span just
 * freed stays dirty, large or small.  With nobody else busy, the same
 * frees purge at once.  The hook is asked once per at-once purge. */
static bool fake_busy_answer;
static int fake_busy_calls;
static bool fake_busy(uint64_t now) {
  (void)now;
  fake_busy_calls++;
  return fake_busy_answer;
}

static void test_purge_waits_while_busy(void **state) {
  (void)state;
  enum { LIMIT = 64, NSMALL = LIMIT / 2 + 1 };
  unsigned cls = pl_size_class(64);
  bool (*saved_hook)(uint64_t) = pl_span_others_busy;
  pl_span_others_busy = fake_busy;
  for (int busy = 1; busy >= 0; busy--) {
    pl_span_t *big = whole_chunk();
    pl_span_t *sm[NSMALL];
    for (int i = 0; i < NSMALL; i++) sm[i] = alloc_span(1, 1, PL_SPAN_SMALL, cls, NULL);
    pl_span_purge(0, false, 0);
    assert_int_equal(pl_span_dirty_bytes(), 0);
    pl_span_dirty_min = LIMIT * PL_PAGE_SIZE;
    pl_span_dirty_shift = 60; /* no share of the active pages */
    fake_busy_answer = busy;
    fake_busy_calls = 0;
    pl_span_free(big); /* a whole chunk: past four times the limit */
    size_t after_big = pl_span_dirty_bytes();
    int calls_big = fake_busy_calls;
    for (int i = 0; i < NSMALL; i++) pl_span_free(sm[i]);
    size_t after_small = pl_span_dirty_bytes();
    pl_span_dirty_min = (size_t)1 << 46;
    pl_span_dirty_shift = saved_dirty_shift;
    heap_ok();
    assert_int_equal(calls_big, 1);
    if (busy) {
      if (after_big != (size_t)NPAGES * PL_PAGE_SIZE)
        fail_msg("another thread busy: %zu of %zu bytes just freed stay dirty", after_big,
                 (size_t)NPAGES * PL_PAGE_SIZE);
      if (after_small != after_big + NSMALL * PL_PAGE_SIZE)
        fail_msg("another thread busy: small spans just freed were purged (%zu dirty, not %zu)",
                 after_small, after_big + NSMALL * PL_PAGE_SIZE);
      assert_true(fake_busy_calls >= 2); /* the small spans asked too */
    } else {
      if (after_big > LIMIT / 2 * PL_PAGE_SIZE)
        fail_msg("nobody else busy: %zu bytes stay dirty past a limit of %d pages", after_big,
                 LIMIT);
      assert_true(after_small <= LIMIT / 2 * PL_PAGE_SIZE + NSMALL * PL_PAGE_SIZE);
    }
  }
  pl_span_others_busy = saved_hook;
  pl_span_purge(0, false, 0);
}

/* Chunk counts and mapped bytes follow what the test does; wholly free
 * chunks beyond the reserve are unmapped and leave the map. */
static void test_totals_and_unmap(void **state) {
  (void)state;
  pl_span_totals_t t0, t1, t2, t3;
  pl_span_purge(0, false, 0);
  pl_span_totals(&t0);
  check_totals_consistent(&t0);
  size_t k = t0.retained_chunks + 2;
  pl_span_t *sp[64];
  uintptr_t base[64];
  assert_true(k <= 64);
  for (size_t i = 0; i < k; i++) {
    sp[i] = whole_chunk();
    base[i] = sp[i]->chunk->base;
  }
  pl_span_totals(&t1);
  check_totals_consistent(&t1);
  assert_int_equal(t1.chunks, t0.chunks + 2);
  assert_int_equal(t1.mapped, t0.mapped + 2 * PL_CHUNK_SIZE);
  assert_int_equal(t1.large_bytes, t0.large_bytes + k * PL_CHUNK_SIZE);
  assert_int_equal(t1.retained_chunks, 0);
  assert_int_equal(t1.small_bytes, t0.small_bytes);

  for (size_t i = 0; i < k; i++) pl_span_free(sp[i]);
  heap_ok();
  pl_span_totals(&t2);
  check_totals_consistent(&t2);
  assert_int_equal(t2.chunks, t1.chunks);
  assert_int_equal(t2.large_bytes, t0.large_bytes);
  assert_int_equal(t2.free_bytes, t0.free_bytes + 2 * PL_CHUNK_SIZE);
  assert_int_equal(t2.retained_chunks, k);
  assert_int_equal(t2.dirty_bytes, t0.dirty_bytes + k * PL_CHUNK_SIZE);

  size_t saved_retain = pl_span_retain_chunks;
  pl_span_retain_chunks = 1;
  size_t released = pl_span_purge(0, true, 0);
  pl_span_retain_chunks = saved_retain;
  heap_ok();
  pl_span_totals(&t3);
  check_totals_consistent(&t3);
  assert_true(released >= k * PL_CHUNK_SIZE);
  assert_int_equal(t3.retained_chunks, 1);
  assert_int_equal(t3.chunks, t2.chunks - (k - 1));
  assert_int_equal(t3.unmapped_chunks, t2.unmapped_chunks + (k - 1));
  assert_int_equal(t3.dirty_bytes, 0);
  size_t gone = 0;
  for (size_t i = 0; i < k; i++) {
    pl_chunk_t *c = pl_chunk_lookup((void *)base[i]);
    if (c == NULL || c == &pl_chunk_tombstone) {
      /* Gone: an arena slot keeps the tombstone (a later free there is a
       * double free), a chunk of its own mapping is forgotten. */
      gone++;
      assert_ptr_equal(c, base[i] - pl_arena_base < pl_arena_size ? &pl_chunk_tombstone : NULL);
      assert_ptr_equal(pl_chunk_lookup((void *)(base[i] + PL_CHUNK_SIZE - 1)), c);
    } else {
      assert_int_equal(c->kind, PL_CHUNK_HEAP);
      assert_int_equal(c->base, base[i]);
      check_chunk(c);
    }
  }
  assert_int_equal(gone, k - 1);
}

/* Heap chunks come from the arena's slots (or, with PL_TEST_NO_ARENA=1,
 * set by test/no_arena.sh, which runs this under a ulimit -v too small to
 * reserve it, from mappings of their own).  A chunk unmapped beyond the
 * retained ones gives its slot back with its page map cleared, and the
 * next chunk reuses that slot. */
static void test_arena_slots(void **state) {
  (void)state;
  const char *na = getenv("PL_TEST_NO_ARENA");
  bool want_arena = !(na != NULL && na[0] == '1');
  pl_span_purge(0, true, 0);
  pl_span_totals_t t0;
  pl_span_totals(&t0);
  size_t k = t0.retained_chunks + 2;
  pl_span_t *sp[64];
  assert_true(k <= 64);
  for (size_t i = 0; i < k; i++) {
    sp[i] = whole_chunk();
    pl_chunk_t *c = sp[i]->chunk;
    bool in_arena = c->base - pl_arena_base < pl_arena_size;
    if (in_arena != want_arena)
      fail_msg("chunk 0x%lx %s the arena (arena size %zu)", (unsigned long)c->base,
               in_arena ? "in" : "outside", pl_arena_size);
  }
  if (!want_arena) {
    assert_int_equal(pl_arena_size, 0);
    for (size_t i = 0; i < k; i++) pl_span_free(sp[i]);
    return;
  }
  uintptr_t bases[64];
  for (size_t i = 0; i < k; i++) bases[i] = sp[i]->chunk->base;
  uintptr_t last = bases[k - 1];
  size_t first_page = (last - pl_arena_base) >> PL_PAGE_SHIFT;
  for (size_t i = 0; i < k; i++) pl_span_free(sp[i]);
  size_t saved_retain = pl_span_retain_chunks;
  pl_span_retain_chunks = 0;
  pl_span_purge(0, true, 0);
  pl_span_retain_chunks = saved_retain;
  heap_ok();
  /* Unmapped (none retained): its slot holds the tombstone and its page
   * map reads as zero. */
  assert_ptr_equal(pl_chunk_lookup((void *)last), &pl_chunk_tombstone);
  for (size_t p = 0; p < NPAGES; p++) {
    const pl_pageword_t *w = &pl_arena_info[(first_page + p) * PL_PW_PER_PAGE];
    if (w[0].span_neg != 0 || w[0].bin != 0 || w[1].span_neg != 0 || w[1].bin != 0 ||
        pl_arena_spans[first_page + p] != NULL)
      fail_msg("page %zu of the unmapped slot 0x%lx keeps its page map", p, (unsigned long)last);
  }
  /* The slots given back are reused before new ones. */
  pl_span_t *again = whole_chunk();
  uintptr_t b = again->chunk->base;
  bool reused = false;
  for (size_t i = 0; i < k; i++) reused |= bases[i] == b;
  if (!reused) fail_msg("new chunk 0x%lx is not in a slot just given back", (unsigned long)b);
  check_chunk(again->chunk);
  pl_span_free(again);
}

/* With PL_TEST_SMALL_ARENA=1 (test/no_arena.sh runs this under a ulimit
 * -v that leaves room for the smallest arena, 256 MiB, and a little more):
 * chunks fill the arena's slots, the next ones are mapped outside it, and
 * both kinds work side by side and go back.  Without it, only that a
 * chunk is inside the arena (or, with PL_TEST_NO_ARENA=1, outside). */
static void test_arena_full(void **state) {
  (void)state;
  const char *v = getenv("PL_TEST_SMALL_ARENA");
  if (v == NULL || v[0] != '1') {
    const char *na = getenv("PL_TEST_NO_ARENA");
    bool want_arena = !(na != NULL && na[0] == '1');
    pl_span_t *s = whole_chunk();
    assert_int_equal(s->chunk->base - pl_arena_base < pl_arena_size, want_arena);
    pl_span_free(s);
    return;
  }
  assert_true(pl_arena_size > 0 && pl_arena_size <= ((size_t)1 << 30));
  enum { MAXC = 300 };
  static pl_span_t *sp[MAXC];
  size_t n = 0, outside = 0;
  while (n < MAXC && outside < 4) {
    sp[n] = whole_chunk();
    if (sp[n]->chunk->base - pl_arena_base >= pl_arena_size) {
      outside++;
      assert_ptr_equal(sp[n]->chunk->page_info, sp[n]->chunk->own_info);
    }
    n++;
  }
  if (outside < 4) fail_msg("%zu chunks, none outside an arena of %zu bytes", n, pl_arena_size);
  /* Small blocks now come from a chunk outside the arena: free() takes
   * its slow path for them, which finds them through the radix map. */
  void *blk[64];
  for (int i = 0; i < 64; i++) {
    blk[i] = pallet_malloc(100);
    assert_non_null(blk[i]);
    memset(blk[i], 0x5a, 100);
  }
  pl_chunk_t *bc = pl_chunk_lookup(blk[63]);
  assert_non_null(bc);
  assert_true(bc->base - pl_arena_base >= pl_arena_size);
  assert_true(pallet_malloc_usable_size(blk[63]) >= 100);
  for (int i = 0; i < 64; i++) pallet_free(blk[i]);
  heap_ok();
  for (size_t i = 0; i < n; i++) pl_span_free(sp[i]);
  heap_ok();
  size_t saved_retain = pl_span_retain_chunks;
  pl_span_retain_chunks = 0;
  pl_span_purge(0, true, 0);
  pl_span_retain_chunks = saved_retain;
  heap_ok();
}

/* Heaps.  A thread takes a new chunk for its home heap only when no
 * heap has room; a span goes back to its own chunk's heap, whichever
 * thread frees it; a thread whose home heap has no room takes a span
 * another heap has before it maps a chunk. */
typedef struct heap_thread {
  pl_span_t *s;
  unsigned home;
} heap_thread_t;

static void *heap_thread_alloc(void *arg) {
  heap_thread_t *t = arg;
  bool z;
  t->home = pl_span_home();
  t->s = pl_span_alloc(NPAGES, 1, PL_SPAN_LARGE, 0, &z, NULL);
  return NULL;
}

static void test_heaps(void **state) {
  (void)state;
  if (pl_span_nheaps < 3) pl_span_nheaps = 3; /* (raised only: a chunk's heap stays valid) */
  unsigned home = pl_span_home();
  assert_true(home < pl_span_nheaps);
  /* Whole chunks until one is new: then no heap has a free chunk left. */
  pl_span_t *held[64];
  size_t n = 0;
  pl_span_totals_t t0, t1;
  for (;;) {
    assert_true(n < 56);
    pl_span_totals(&t0);
    held[n++] = whole_chunk();
    pl_span_totals(&t1);
    if (t1.chunks > t0.chunks) break;
  }
  assert_int_equal(held[n - 1]->chunk->heap, home);
  /* A thread with another home heap. */
  heap_thread_t t = {NULL, home};
  for (int tries = 0; tries < 8 && t.home == home; tries++) {
    if (t.s) held[n++] = t.s; /* (a new chunk of this thread's heap) */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, heap_thread_alloc, &t), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_non_null(t.s);
  }
  assert_int_not_equal(t.home, home);
  check_span_map(t.s);
  heap_ok();
  assert_int_equal(t.s->chunk->heap, t.home);
  pl_chunk_t *theirs = t.s->chunk;
  /* Freed here, it goes back to its own heap, coalesced whole. */
  pl_span_free(t.s);
  heap_ok();
  pl_span_t found;
  assert_true(pl_span_find((void *)theirs->base, &found));
  assert_int_equal(found.state, PL_SPAN_FREE);
  assert_int_equal(found.npages, NPAGES);
  /* This thread's home heap has no whole chunk free: it takes the other
   * heap's rather than a new one. */
  pl_span_totals(&t0);
  pl_span_t *s = whole_chunk();
  pl_span_totals(&t1);
  assert_true(s->chunk == theirs);
  assert_int_equal(t1.chunks, t0.chunks);
  pl_span_free(s);
  for (size_t i = 0; i < n; i++) pl_span_free(held[i]);
  heap_ok();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lengths),
      cmocka_unit_test(test_coalesce_none),
      cmocka_unit_test(test_coalesce_left),
      cmocka_unit_test(test_coalesce_right),
      cmocka_unit_test(test_coalesce_both),
      cmocka_unit_test(test_coalesce_first_page),
      cmocka_unit_test(test_coalesce_last_page),
      cmocka_unit_test(test_coalesce_whole),
      cmocka_unit_test(test_aligned),
      cmocka_unit_test(test_large_over_ghosts),
      cmocka_unit_test(test_shrink_grow),
      cmocka_unit_test(test_purge),
      cmocka_unit_test(test_dirty_count),
      cmocka_unit_test(test_merge_age),
      cmocka_unit_test(test_purge_on_free),
      cmocka_unit_test(test_purge_on_small_free),
      cmocka_unit_test(test_peak_room),
      cmocka_unit_test(test_purge_waits_while_busy),
      cmocka_unit_test(test_totals_and_unmap),
      cmocka_unit_test(test_arena_slots),
      cmocka_unit_test(test_arena_full),
      cmocka_unit_test(test_heaps), /* last: it raises the heap count */
  };
  return cmocka_run_group_tests_name("unit_span", tests, setup, NULL);
}
