/*
 * unit_central.c — unit tests of the central lists (central.h): batches
 * of blocks are distinct, aligned blocks of SMALL spans of their class,
 * marked allocated in their span's bitmap; the per-class totals agree
 * with a walk of the span heap; blocks given back return to the bitmap, a
 * span whose blocks all come back goes back to the heap or, within the
 * dirty bound, stays with its class (kept) and is used again by its next
 * batch (one spare kept per class besides); a block given back twice
 * stops the program with
 * "double free 0x<address>" (death tests in forked children).
 * pl_central_check() and pl_span_heap_check() run after every step.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "central.h"
#include "pallet.h"
#include "common.h"
#include "lifecycle.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  /* The purge rules these tests check are the base ones: no room kept
   * for the recent peak of active pages (unit_span tests that). */
  pl_span_peak_ms = 0;
  return 0;
}

static void checks_ok(void) {
  assert_int_equal(pl_central_check(), 0);
  assert_int_equal(pl_span_heap_check(), 0);
}

/* Blocks in use of class cls according to the totals. */
static size_t in_use(const pl_central_totals_t *t) { return t->blocks - t->free_blocks; }

/* An independent count, from a walk of the span heap. */
struct walk {
  unsigned cls;
  size_t spans, free_blocks, bad;
};

static void walk_fn(const pl_span_t *s, void *arg) {
  struct walk *w = arg;
  if (s->cls != w->cls) return;
  size_t pop = 0;
  for (size_t i = 0; i < PL_SPAN_BITMAP_WORDS; i++)
    pop += (size_t)__builtin_popcountll(s->free_map[i]);
  if (pop != s->nfree || s->nblocks != pl_class_info[w->cls].nblocks) w->bad++;
  w->spans++;
  w->free_blocks += s->nfree;
}

static void check_totals(unsigned cls, pl_central_totals_t *t) {
  /* Blocks parked in the transfer array are free but not in the bitmaps:
   * put them back first, so both counts describe the same thing. */
  pl_central_drain(cls);
  pl_central_totals(cls, t);
  assert_int_equal(t->blocks, t->spans * pl_class_info[cls].nblocks);
  assert_true(t->free_blocks <= t->blocks);
  struct walk w = {.cls = cls};
  pl_central_lock_all();
  pl_span_foreach_small(walk_fn, &w);
  pl_central_unlock_all();
  assert_int_equal(w.bad, 0);
  assert_int_equal(w.spans, t->spans);
  assert_int_equal(w.free_blocks, t->free_blocks);
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* The alignment every block of a class has: the largest power of two
 * dividing its size, at most a page (spans start on pages). */
static size_t natural_align(size_t size) {
  size_t a = size & -size;
  return a > PL_PAGE_SIZE ? PL_PAGE_SIZE : a;
}

/* p is an allocated block of class cls. */
static void check_block(unsigned cls, void *p) {
  size_t size = pl_class_size(cls);
  pl_span_t *s = pl_span_of(p);
  if (s == NULL) fail_msg("block %p is in no span", p);
  if (s->state != PL_SPAN_SMALL || s->cls != cls)
    fail_msg("block %p: span state %u class %u, want SMALL class %u", p, s->state,
             s->cls, cls);
  uintptr_t off = (uintptr_t)p - s->start;
  if (off % size != 0) fail_msg("block %p not on a block boundary", p);
  size_t idx = off / size;
  assert_true(idx < s->nblocks);
  assert_int_equal(pl_class_index(cls, off), idx);
  if (s->free_map[idx / 64] & ((uint64_t)1 << (idx % 64)))
    fail_msg("block %p handed out but still marked free", p);
  assert_int_equal((uintptr_t)p % PL_MIN_ALIGN, 0);
  assert_int_equal((uintptr_t)p % natural_align(size), 0);
}

static bool block_is_free(void *p) {
  /* Its span may have gone back to the heap, whose page map names the
   * span of a free span's inner pages no longer. */
  pl_span_t found;
  if (!pl_span_find(p, &found)) return false;
  if (found.state == PL_SPAN_FREE) return true;
  pl_span_t *s = pl_span_of(p);
  if (s->state != PL_SPAN_SMALL) return false;
  size_t idx = ((uintptr_t)p - s->start) / pl_class_size(s->cls);
  return (s->free_map[idx / 64] >> (idx % 64)) & 1;
}

/* n blocks of class cls, in as many batches as it takes: a batch warms
 * at most a few cold page words (central.c), so one from new spans may hold
 * fewer blocks than asked for, but never none. */
static size_t take_blocks(unsigned cls, void **out, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t k = pl_central_alloc_batch(cls, out + got, n - got);
    assert_true(k > 0 && k <= n - got);
    got += k;
  }
  return got;
}

/* The distinct starts of the spans of blocks b[0..n), into starts;
 * returns how many. */
static size_t span_starts(void *const *b, size_t n, uintptr_t *starts) {
  size_t nstarts = 0;
  for (size_t i = 0; i < n; i++) {
    uintptr_t st = pl_span_of(b[i])->start;
    size_t k = 0;
    while (k < nstarts && starts[k] != st) k++;
    if (k == nstarts) starts[nstarts++] = st;
  }
  return nstarts;
}

/* A class keeps a spare span only up to this size (central.c). */
#define SPARE_BYTES ((size_t)64 << 10)

/* How many of the spans starting at starts[0..n) their class keeps. */
static size_t spans_kept(const uintptr_t *starts, size_t n) {
  size_t kept = 0;
  for (size_t k = 0; k < n; k++) {
    const pl_span_t *s = pl_span_of((void *)starts[k]);
    if (s != NULL && s->state == PL_SPAN_SMALL && (s->flags & PL_SPAN_KEPT)) kept++;
  }
  return kept;
}

/* Sets the dirty bound, which bounds the kept spans too, to max(floor,
 * the heap's active bytes >> shift); returns the old settings in
 * *old_floor and *old_shift. */
static void set_dirty_bound(size_t floor, unsigned shift, size_t *old_floor, unsigned *old_shift) {
  *old_floor = pl_span_dirty_min;
  *old_shift = pl_span_dirty_shift;
  pl_span_dirty_min = floor;
  pl_span_dirty_shift = shift;
}

/* How many of the spans starting at starts[0..n) are free in the heap. */
static size_t spans_back_in_heap(const uintptr_t *starts, size_t n) {
  size_t back = 0;
  for (size_t k = 0; k < n; k++) {
    pl_span_t s;
    assert_true(pl_span_find((void *)starts[k], &s));
    if (s.state == PL_SPAN_FREE) back++;
  }
  return back;
}

static void batch_case(size_t request) {
  unsigned cls = pl_size_class(request);
  size_t size = pl_class_size(cls), nb = pl_class_info[cls].nblocks;
  size_t n = 2 * nb + 3;
  void **b = calloc(n, sizeof *b);
  void **sorted = calloc(n, sizeof *b);
  uintptr_t *starts = calloc(n, sizeof *starts);
  assert_non_null(b);
  assert_non_null(sorted);
  assert_non_null(starts);
  pl_central_totals_t t0, t1, t2, t3;
  check_totals(cls, &t0);
  checks_ok();

  size_t got = take_blocks(cls, b, n);
  assert_int_equal(got, n);
  checks_ok();
  check_totals(cls, &t1);
  assert_int_equal(in_use(&t1), in_use(&t0) + n);
  assert_true(t1.spans >= (n + nb - 1) / nb);

  /* Distinct, and (with the pattern below) not overlapping. */
  memcpy(sorted, b, n * sizeof *b);
  qsort(sorted, n, sizeof *sorted, cmp_ptr);
  for (size_t i = 0; i < n; i++) {
    check_block(cls, b[i]);
    if (i > 0 && (uintptr_t)sorted[i] - (uintptr_t)sorted[i - 1] < size)
      fail_msg("class %u: blocks %p and %p overlap", cls, sorted[i - 1], sorted[i]);
  }
  for (size_t i = 0; i < n; i++) tu_fill(b[i], size, i + 1);
  for (size_t i = 0; i < n; i++)
    if (tu_check(b[i], size, i + 1) != (size_t)-1)
      fail_msg("class %u: block %zu was overwritten", cls, i);

  /* The spans the blocks came from. */
  size_t nstarts = span_starts(b, n, starts);
  assert_true(nstarts >= (n + nb - 1) / nb);

  /* Every other block back. */
  size_t h = 0;
  for (size_t i = 0; i < n; i += 2) {
    pl_central_free_batch(cls, &b[i], 1);
    pl_central_drain(cls);
    h++;
    assert_true(block_is_free(b[i]));
  }
  checks_ok();
  check_totals(cls, &t2);
  assert_int_equal(in_use(&t2), in_use(&t0) + n - h);
  for (size_t i = 1; i < n; i += 2) check_block(cls, b[i]);

  /* The rest, as one batch. */
  size_t m = 0;
  for (size_t i = 1; i < n; i += 2) b[m++] = b[i];
  pl_central_free_batch(cls, b, m);
  pl_central_drain(cls);
  checks_ok();
  check_totals(cls, &t3);
  assert_int_equal(in_use(&t3), in_use(&t0));
  for (size_t i = 0; i < m; i++) assert_true(block_is_free(b[i]));
  /* Wholly free spans went back to the heap or were kept, but for one
   * spare. */
  size_t kept = spans_kept(starts, nstarts);
  assert_true(t3.spans <= t0.spans + 1 + kept);
  size_t back = spans_back_in_heap(starts, nstarts);
  if (t0.spans == 0 && back + kept + 1 < nstarts)
    fail_msg("class %u: only %zu of %zu wholly free spans went back to the heap "
             "(%zu kept)", cls, back, nstarts, kept);

  pl_central_release_spares();
  checks_ok();
  pl_central_totals_t t4;
  check_totals(cls, &t4);
  if (t0.spans == 0) assert_int_equal(t4.spans, 0);
  assert_int_equal(t4.free_blocks, 0);
  free(b);
  free(sorted);
  free(starts);
}

static void test_batches(void **state) {
  (void)state;
  static const size_t sizes[] = {1,    16,   32,   48,    112,   128,   129,
                                 1000, 1024, 3000, 8192,  9000,  65536, 100000,
                                 PL_SMALL_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) batch_case(sizes[i]);
}

/* One batch that empties more spans than free_to_spans gives back to the
 * heap under one hold of the class lock (16): each goes back, none is
 * lost or given twice, and the counts stay right. */
static void test_batch_frees_many_spans(void **state) {
  (void)state;
  unsigned cls = pl_size_class(200000);
  size_t nb = pl_class_info[cls].nblocks, n = 35 * nb;
  assert_true(pl_class_info[cls].pages * PL_PAGE_SIZE > SPARE_BYTES); /* no spare kept */
  /* None kept either: a dirty bound of 0. */
  size_t old_floor;
  unsigned old_shift;
  pl_central_release_spares();
  set_dirty_bound(0, 63, &old_floor, &old_shift);
  pl_central_drain(cls);
  pl_central_totals_t t0, t1;
  check_totals(cls, &t0);
  void **b = calloc(n, sizeof *b);
  uintptr_t *starts = calloc(n, sizeof *starts);
  assert_non_null(b);
  assert_non_null(starts);
  assert_int_equal(take_blocks(cls, b, n), n);
  size_t nstarts = span_starts(b, n, starts);
  assert_true(nstarts >= 35);
  pl_central_free_batch(cls, b, n); /* more than the transfer array holds */
  pl_central_drain(cls);
  checks_ok();
  check_totals(cls, &t1);
  assert_int_equal(in_use(&t1), in_use(&t0));
  size_t back = spans_back_in_heap(starts, nstarts);
  if (back != nstarts) fail_msg("only %zu of %zu wholly free spans went back to the heap", back, nstarts);
  assert_int_equal(pl_central_kept_bytes(), 0);
  set_dirty_bound(old_floor, old_shift, &old_floor, &old_shift);
  free(b);
  free(starts);
}

/* Spans of two blocks of 44 KiB (88 KiB: no spare): emptied, they stay
 * with the class within the dirty bound (less the heap's dirty memory),
 * counted in the kept bytes and in the class's totals; the next batches
 * take the same spans back, and the count drops to 0; past the bound,
 * the rest go back to the heap; pl_central_release_spares gives every
 * kept span back, free since it was kept; after the heap's at-once purge
 * none is kept until a span is carved again.  Spans of one block are
 * never kept.  (No decay pass runs here: nothing calls malloc or free.) */
static void test_kept_spans(void **state) {
  (void)state;
  unsigned cls = pl_size_class(45000);
  size_t span_bytes = (size_t)pl_class_info[cls].pages * PL_PAGE_SIZE;
  assert_int_equal(pl_class_info[cls].nblocks, 2);
  assert_true(span_bytes > SPARE_BYTES);
  enum { NSPANS = 24 };
  size_t n = 2 * NSPANS;
  void *b[2 * NSPANS], *again[2 * NSPANS];
  uintptr_t starts[2 * NSPANS], starts2[2 * NSPANS];
  pl_central_release_spares();
  assert_int_equal(pl_central_kept_bytes(), 0);
  pl_central_totals_t t0, t1, t2;
  check_totals(cls, &t0);
  assert_int_equal(t0.spans, 0);
  size_t old_floor;
  unsigned old_shift;
  set_dirty_bound((size_t)16 << 20, 4, &old_floor, &old_shift);
  pl_span_purge(0, false, 0);

  assert_int_equal(take_blocks(cls, b, n), n);
  size_t nstarts = span_starts(b, n, starts);
  assert_int_equal(nstarts, NSPANS);
  pl_central_free_batch(cls, b, n);
  pl_central_drain(cls);
  checks_ok();
  assert_int_equal(spans_kept(starts, nstarts), NSPANS);
  assert_int_equal(spans_back_in_heap(starts, nstarts), 0);
  assert_int_equal(pl_central_kept_bytes(), NSPANS * span_bytes);
  check_totals(cls, &t1);
  assert_int_equal(t1.spans, NSPANS);
  assert_int_equal(in_use(&t1), 0);

  /* Taken again: the same spans, none kept any more. */
  assert_int_equal(take_blocks(cls, again, n), n);
  checks_ok();
  assert_int_equal(span_starts(again, n, starts2), NSPANS);
  for (size_t k = 0; k < NSPANS; k++) {
    size_t j = 0;
    while (j < NSPANS && starts2[j] != starts[k]) j++;
    if (j == NSPANS) fail_msg("kept span %#lx not used again", (unsigned long)starts[k]);
  }
  for (size_t i = 0; i < n; i++) check_block(cls, again[i]);
  assert_int_equal(spans_kept(starts, nstarts), 0);
  assert_int_equal(pl_central_kept_bytes(), 0);

  /* A bound of 5 spans' bytes and no dirty memory in the heap: 5 kept,
   * the rest back in the heap (now dirty, past the bound). */
  size_t ignored_floor;
  unsigned ignored_shift;
  set_dirty_bound(5 * span_bytes, 63, &ignored_floor, &ignored_shift);
  pl_span_purge(0, false, 0);
  assert_int_equal(pl_span_dirty_bytes(), 0);
  uint64_t kept_at = pl_os_now_ms();
  pl_central_free_batch(cls, again, n);
  pl_central_drain(cls);
  checks_ok();
  assert_int_equal(spans_kept(starts, nstarts), 5);
  assert_int_equal(spans_back_in_heap(starts, nstarts), NSPANS - 5);
  assert_int_equal(pl_central_kept_bytes(), 5 * span_bytes);
  assert_true(pl_span_dirty_bytes() >= 5 * span_bytes);
  /* The heap's dirty memory counts against the bound: a kept span taken
   * and emptied again is not kept. */
  assert_int_equal(take_blocks(cls, again, 2), 2);
  assert_int_equal(pl_central_kept_bytes(), 4 * span_bytes);
  pl_central_free_batch(cls, again, 2);
  pl_central_drain(cls);
  checks_ok();
  assert_int_equal(pl_central_kept_bytes(), 4 * span_bytes);
  assert_int_equal(spans_back_in_heap(starts, nstarts), NSPANS - 4);

  /* Given back later, a kept span is free since it was kept (it ages
   * towards its purge from then). */
  struct timespec pause = {0, 200 * 1000000L};
  nanosleep(&pause, NULL);
  pl_central_release_spares();
  checks_ok();
  assert_int_equal(pl_central_kept_bytes(), 0);
  assert_int_equal(spans_back_in_heap(starts, nstarts), NSPANS);
  for (size_t k = 0; k < nstarts; k++) {
    pl_span_t found;
    assert_true(pl_span_find((void *)starts[k], &found));
    if (found.free_since > kept_at + 100)
      fail_msg("span %#lx free since %llu ms, kept at %llu ms", (unsigned long)starts[k],
               (unsigned long long)found.free_since, (unsigned long long)kept_at);
  }
  check_totals(cls, &t2);
  assert_int_equal(t2.spans, 0);

  /* The heap's at-once purge (pl_central_release_kept): the kept spans go
   * back, and none is kept until a span is carved again. */
  set_dirty_bound((size_t)16 << 20, 4, &ignored_floor, &ignored_shift);
  pl_span_purge(0, false, 0);
  assert_int_equal(take_blocks(cls, b, n), n); /* carves spans */
  assert_int_equal(span_starts(b, n, starts), NSPANS);
  pl_central_free_batch(cls, b, n / 2);
  pl_central_drain(cls);
  assert_true(pl_central_kept_bytes() > 0);
  pl_central_release_kept();
  checks_ok();
  assert_int_equal(pl_central_kept_bytes(), 0);
  pl_central_free_batch(cls, b + n / 2, n - n / 2);
  pl_central_drain(cls);
  checks_ok();
  assert_int_equal(pl_central_kept_bytes(), 0);
  assert_int_equal(spans_back_in_heap(starts, NSPANS), NSPANS);
  assert_int_equal(take_blocks(cls, b, 2), 2); /* carves a span: keeping resumes */
  pl_central_free_batch(cls, b, 2);
  pl_central_drain(cls);
  checks_ok();
  assert_int_equal(pl_central_kept_bytes(), span_bytes);
  pl_central_release_spares();

  /* Spans of one block (104 KiB) go back to the heap, bound or not. */
  unsigned one = pl_size_class(100000);
  assert_int_equal(pl_class_info[one].nblocks, 1);
  assert_int_equal(take_blocks(one, b, 3), 3);
  assert_int_equal(span_starts(b, 3, starts), 3);
  pl_central_free_batch(one, b, 3);
  pl_central_drain(one);
  checks_ok();
  assert_int_equal(spans_back_in_heap(starts, 3), 3);
  assert_int_equal(pl_central_kept_bytes(), 0);
  set_dirty_bound(old_floor, old_shift, &old_floor, &old_shift);
}

/* The transfer array is laid out in rows (central.c): batches freed into
 * it, of sizes that start and end inside rows and cross them, come back
 * last in, first out, each block once, in batches of other sizes. */
static void test_transfer_order(void **state) {
  (void)state;
  unsigned cls = pl_size_class(16);
  enum { N = 300 };
  static const size_t put[] = {1, 63, 2, 130, 64, 40};
  static const size_t take[] = {70, 1, 129, 100};
  void *b[N], *got[N];
  pl_central_drain(cls);
  assert_int_equal(take_blocks(cls, b, N), N);
  size_t at = 0;
  for (size_t k = 0; k < sizeof put / sizeof put[0]; k++) {
    pl_central_free_batch(cls, b + at, put[k]);
    at += put[k];
  }
  assert_int_equal(at, N);
  /* All of them in the array (it holds 512 of this class), none back in
   * its span. */
  for (size_t i = 0; i < N; i++) assert_false(block_is_free(b[i]));
  size_t left = N;
  for (size_t k = 0; k < sizeof take / sizeof take[0]; k++) {
    assert_int_equal(pl_central_alloc_batch(cls, got, take[k]), take[k]);
    for (size_t j = 0; j < take[k]; j++) assert_ptr_equal(got[j], b[left - take[k] + j]);
    left -= take[k];
  }
  assert_int_equal(left, 0);
  pl_central_free_batch(cls, b, N);
  pl_central_drain(cls);
  for (size_t i = 0; i < N; i++) assert_true(block_is_free(b[i]));
  checks_ok();
}

/* A worker thread that runs steps on request, so that a test can act as
 * two threads with different home heaps, one step at a time. */
struct worker {
  pthread_t th;
  pthread_mutex_t m;
  pthread_cond_t cv;
  void (*fn)(void *);
  void *arg;
  bool quit;
};

static void *worker_main(void *p) {
  struct worker *w = p;
  pthread_mutex_lock(&w->m);
  for (;;) {
    while (w->fn == NULL && !w->quit) pthread_cond_wait(&w->cv, &w->m);
    if (w->fn == NULL) break;
    w->fn(w->arg);
    w->fn = NULL;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->m);
  return NULL;
}

static void worker_start(struct worker *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  assert_int_equal(pthread_create(&w->th, NULL, worker_main, w), 0);
}

static void worker_run(struct worker *w, void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&w->m);
  w->fn = fn;
  w->arg = arg;
  pthread_cond_broadcast(&w->cv);
  while (w->fn != NULL) pthread_cond_wait(&w->cv, &w->m);
  pthread_mutex_unlock(&w->m);
}

static void worker_stop(struct worker *w) {
  pthread_mutex_lock(&w->m);
  w->quit = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->m);
  pthread_join(w->th, NULL);
}

enum { SHARD_N = 8 };
struct shard_step {
  unsigned cls, home;
  size_t n, got;
  void *b[2 * SHARD_N];
};
static void step_home(void *p) { ((struct shard_step *)p)->home = pl_span_home(); }
static void step_alloc(void *p) {
  struct shard_step *st = p;
  st->got = pl_central_alloc_batch(st->cls, st->b, st->n);
}
static void step_free(void *p) {
  struct shard_step *st = p;
  pl_central_free_batch(st->cls, st->b, st->got);
}

/* Whether p lies in one of the spans of the blocks b[0 .. n). */
static bool in_spans_of(const void *p, void *const *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (pl_span_of(p) == pl_span_of(b[i])) return true;
  return false;
}

/* How many of the blocks a[0 .. na) are among b[0 .. nb). */
static size_t count_among(void *const *a, size_t na, void *const *b, size_t nb) {
  size_t k = 0;
  for (size_t i = 0; i < na; i++)
    for (size_t j = 0; j < nb; j++)
      if (a[i] == b[j]) {
        k++;
        break;
      }
  return k;
}

/* Blocks a thread took from another shard's transfer array, then
 * flushed: under 256 B (and from 32 KiB) they go back to the array of
 * their span's shard, on top of what the first thread flushed there
 * since, and that thread's next refill gets them; from 256 B they stay
 * in the flusher's shard, and the first thread's next refill gets its
 * own blocks. */
static void check_flush_shard(struct worker *w1, struct worker *w2, size_t size, bool to_flusher) {
  unsigned cls = pl_size_class(size);
  /* Two batches of at most a third of a span each: the first thread's
   * span keeps free blocks (a batch may be shorter: a refill carves a
   * bounded number of fresh blocks). */
  size_t n = pl_class_info[cls].nblocks / 3;
  if (n > SHARD_N) n = SHARD_N;
  assert_true(n >= 1);
  struct shard_step y = {.cls = cls, .n = n}, a = {.cls = cls, .n = n}, s2 = {.cls = cls};
  pl_central_release_spares();
  worker_run(w1, step_alloc, &y);
  worker_run(w1, step_alloc, &a);
  assert_true(y.got >= 1 && a.got >= 1);
  worker_run(w1, step_free, &a);
  /* The second thread's shard is empty: it takes the first's array. */
  s2.n = a.got;
  worker_run(w2, step_alloc, &s2);
  assert_int_equal(s2.got, a.got);
  if (count_among(s2.b, s2.got, a.b, a.got) != a.got)
    fail_msg("size %zu: the second thread did not take the first's flushed blocks", size);
  worker_run(w1, step_free, &y); /* the first thread's array: y */
  worker_run(w2, step_free, &s2);
  struct shard_step next = {.cls = cls, .n = y.got < a.got ? y.got : a.got};
  worker_run(w1, step_alloc, &next);
  assert_int_equal(next.got, next.n);
  size_t back = count_among(next.b, next.got, a.b, a.got);
  if (to_flusher ? back != 0 : back != next.got)
    fail_msg("size %zu: the first thread's next batch holds %zu of the %zu blocks the second flushed",
             size, back, a.got);
  worker_run(w1, step_free, &next);
  pl_central_release_spares();
  checks_ok();
}

/* A refill whose own transfer array is empty while its shard's partial
 * span still has free blocks takes its own span's blocks, not what
 * another shard's array holds (which would put its blocks next to the
 * other thread's, or move them from core to core). */
static void check_refill_order(struct worker *w1, struct worker *w2, size_t size) {
  unsigned cls = pl_size_class(size);
  size_t n = pl_class_info[cls].nblocks / 2;
  if (n > SHARD_N) n = SHARD_N;
  assert_true(n >= 1);
  struct shard_step s1 = {.cls = cls, .n = n}, s2 = {.cls = cls, .n = n};
  pl_central_release_spares();
  /* The first thread's span keeps free blocks; the second thread's
   * blocks, carved from a span of its own, go to its own array. */
  worker_run(w1, step_alloc, &s1);
  assert_true(s1.got >= 1);
  worker_run(w2, step_alloc, &s2);
  assert_true(s2.got >= 1);
  if (count_among(s2.b, s2.got, s1.b, s1.got) != 0)
    fail_msg("size %zu: the two threads' first batches share blocks", size);
  assert_true(pl_span_of(s1.b[0])->nfree > 0);
  void *theirs[SHARD_N], *mine[SHARD_N];
  size_t ntheirs = s2.got, nmine = s1.got;
  memcpy(theirs, s2.b, ntheirs * sizeof theirs[0]);
  memcpy(mine, s1.b, nmine * sizeof mine[0]);
  worker_run(w2, step_free, &s2);
  struct shard_step s3 = {.cls = cls, .n = ntheirs};
  worker_run(w1, step_alloc, &s3);
  assert_true(s3.got >= 1);
  size_t took = count_among(s3.b, s3.got, theirs, ntheirs);
  if (took != 0)
    fail_msg("size %zu: the refill took %zu of the %zu blocks in the other shard's array", size, took, ntheirs);
  worker_run(w1, step_free, &s3);
  memcpy(s1.b, mine, nmine * sizeof mine[0]);
  s1.got = nmine;
  worker_run(w1, step_free, &s1);
  pl_central_release_spares();
  checks_ok();
}

static void test_flush_shard(void **state) {
  (void)state;
  if (pl_span_nheaps < 2) __atomic_store_n(&pl_span_nheaps, 2, __ATOMIC_RELAXED);
  struct worker w1, w2;
  worker_start(&w1);
  worker_start(&w2);
  /* Classes no other test here uses: its shards start empty. */
  check_flush_shard(&w1, &w2, 96, false);
  check_flush_shard(&w1, &w2, 224, false);
  check_flush_shard(&w1, &w2, 256, true);
  check_flush_shard(&w1, &w2, 1280, true);
  check_flush_shard(&w1, &w2, (size_t)20 << 10, true);
  check_flush_shard(&w1, &w2, (size_t)32 << 10, false);
  check_refill_order(&w1, &w2, 96);
  check_refill_order(&w1, &w2, 352);
  check_refill_order(&w1, &w2, 640);
  check_refill_order(&w1, &w2, (size_t)6 << 10);
  worker_stop(&w1);
  worker_stop(&w2);
}

/* Two threads of different home heaps that each allocate and free
 * their own blocks of one class keep them on spans of their own: the
 * second thread's first batch is carved from a new span, not from the
 * free blocks left in the first thread's span, and each thread's
 * flushed blocks come back to it. */
static void test_shards(void **state) {
  (void)state;
  if (pl_span_nheaps < 2) __atomic_store_n(&pl_span_nheaps, 2, __ATOMIC_RELAXED);
  unsigned cls = pl_size_class(64);
  struct worker w1, w2;
  struct shard_step s1 = {.cls = cls, .n = SHARD_N}, s2 = {.cls = cls, .n = SHARD_N};
  worker_start(&w1);
  worker_start(&w2);
  worker_run(&w1, step_home, &s1);
  worker_run(&w2, step_home, &s2);
  /* Consecutive threads are dealt consecutive heaps. */
  assert_int_not_equal(s1.home % 8, s2.home % 8);
  pl_central_release_spares(); /* empty transfer arrays, no kept span */
  worker_run(&w1, step_alloc, &s1);
  assert_int_equal(s1.got, SHARD_N);
  worker_run(&w2, step_alloc, &s2);
  assert_int_equal(s2.got, SHARD_N);
  /* The first thread's span has free blocks left (a span of this class
   * holds far more than 8), yet none of the second's come from it. */
  assert_true(pl_span_of(s1.b[0])->nfree > 0);
  for (size_t i = 0; i < SHARD_N; i++) {
    if (in_spans_of(s2.b[i], s1.b, SHARD_N))
      fail_msg("block %p of the second thread's batch shares a span with the first thread's", s2.b[i]);
  }
  checks_ok();
  /* Both flush; each one's next batch is its own blocks back. */
  void *mine1[SHARD_N], *mine2[SHARD_N];
  memcpy(mine1, s1.b, sizeof mine1);
  memcpy(mine2, s2.b, sizeof mine2);
  worker_run(&w1, step_free, &s1);
  worker_run(&w2, step_free, &s2);
  checks_ok();
  worker_run(&w1, step_alloc, &s1);
  worker_run(&w2, step_alloc, &s2);
  for (size_t i = 0; i < SHARD_N; i++) {
    if (!in_spans_of(s1.b[i], mine1, SHARD_N))
      fail_msg("the first thread got %p back, not one of the blocks it flushed", s1.b[i]);
    if (!in_spans_of(s2.b[i], mine2, SHARD_N))
      fail_msg("the second thread got %p back, not one of the blocks it flushed", s2.b[i]);
  }
  worker_run(&w1, step_free, &s1);
  worker_run(&w2, step_free, &s2);
  /* A thread whose shard has no free block takes what another shard's
   * transfer array holds before it carves a span: in a class of one
   * block a span, the second thread's next block is the one the first
   * thread flushed. */
  unsigned big = pl_size_class((size_t)48 << 10);
  assert_int_equal(pl_class_info[big].nblocks, 1);
  struct shard_step b1 = {.cls = big, .n = 1}, b2 = {.cls = big, .n = 1};
  worker_run(&w1, step_alloc, &b1);
  worker_run(&w2, step_alloc, &b2);
  assert_int_equal(b1.got, 1);
  assert_int_equal(b2.got, 1);
  void *first = b1.b[0], *second = b2.b[0];
  worker_run(&w1, step_free, &b1);
  pl_central_totals_t t;
  pl_central_totals(big, &t);
  size_t spans = t.spans;
  worker_run(&w2, step_alloc, &b2);
  assert_int_equal(b2.got, 1);
  assert_ptr_equal(b2.b[0], first);
  pl_central_totals(big, &t);
  assert_int_equal(t.spans, spans);
  worker_run(&w2, step_free, &b2);
  b2.b[0] = second;
  worker_run(&w2, step_free, &b2);
  worker_stop(&w1);
  worker_stop(&w2);
  pl_central_release_spares();
  checks_ok();
}

/* Every class, one batch of one span's worth and back. */
static void test_every_class(void **state) {
  (void)state;
  void *b[PL_SPAN_MAX_BLOCKS];
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) {
    size_t nb = pl_class_info[cls].nblocks;
    pl_central_totals_t t0, t1;
    check_totals(cls, &t0);
    assert_int_equal(take_blocks(cls, b, nb), nb);
    for (size_t i = 0; i < nb; i++) check_block(cls, b[i]);
    check_totals(cls, &t1);
    assert_int_equal(in_use(&t1), in_use(&t0) + nb);
    pl_central_free_batch(cls, b, nb);
    check_totals(cls, &t1);
    assert_int_equal(in_use(&t1), in_use(&t0));
    checks_ok();
  }
  assert_int_equal(pl_central_alloc_batch(1, b, 0), 0);
  pl_central_release_spares();
  checks_ok();
}

/* ---- death tests ---------------------------------------------------- */

struct df_arg {
  unsigned cls;
  int how; /* 0: twice in two batches, 1: twice in one batch, 2: spare span, 3: kept span */
};

static void child_double_free(void *arg) {
  const struct df_arg *a = arg;
  void *b[2];
  if (a->how >= 2) {
    pl_central_release_spares();
    TU_CHILD_REQUIRE(pl_central_alloc_batch(a->cls, b, 1) == 1);
    fprintf(stderr, "block %p\n", b[0]);
    pl_central_free_batch(a->cls, b, 1);
    pl_central_drain(a->cls);
    pl_central_totals_t t;
    pl_central_totals(a->cls, &t);
    TU_CHILD_REQUIRE(t.spans == 1); /* kept as the spare (2), or kept (3) */
    TU_CHILD_REQUIRE(a->how == 2 ? pl_central_kept_bytes() == 0 : pl_central_kept_bytes() > 0);
    pl_central_free_batch(a->cls, b, 1);
    pl_central_drain(a->cls);
    return;
  }
  size_t got = pl_central_alloc_batch(a->cls, b, 2);
  if (got == 1) got += pl_central_alloc_batch(a->cls, b + 1, 1);
  TU_CHILD_REQUIRE(got == 2);
  fprintf(stderr, "block %p\n", b[0]);
  if (a->how == 0) {
    pl_central_free_batch(a->cls, b, 1);
    pl_central_free_batch(a->cls, b, 1);
  } else {
    void *twice[2] = {b[0], b[0]};
    pl_central_free_batch(a->cls, twice, 2);
  }
  /* The second copy is caught when the transfer array meets the bitmap. */
  pl_central_drain(a->cls);
}

static void expect_double_free(struct df_arg *a) {
  struct tu_child_result res;
  char how[128], want[64];
  void *blk = NULL;
  tu_run_child(child_double_free, a, 20, &res);
  tu_describe_status(res.status, how, sizeof how);
  const char *line = strstr(res.err, "block ");
  if (line == NULL || sscanf(line, "block %p", &blk) != 1)
    fail_msg("child (class %u, case %d) %s and wrote:\n%s", a->cls, a->how, how, res.err);
  snprintf(want, sizeof want, "double free %p\n", blk);
  if (!(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT) ||
      strstr(res.err, want) == NULL || strstr(res.err, "pallet: ") == NULL)
    fail_msg("class %u, case %d: expected SIGABRT and \"%s\"; the child %s and "
             "wrote:\n%s", a->cls, a->how, want, how, res.err);
}

static void test_double_free(void **state) {
  (void)state;
  static const size_t sizes[] = {16, 200, 5000, PL_SMALL_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int how = 0; how < 2; how++) {
      struct df_arg a = {pl_size_class(sizes[i]), how};
      expect_double_free(&a);
    }
  struct df_arg spare = {pl_size_class(64), 2};
  expect_double_free(&spare);
  struct df_arg kept = {pl_size_class(45000), 3};
  expect_double_free(&kept);
  /* The parent is untouched. */
  checks_ok();
}

static void *purged_block;

static void free_again(void *p) { pallet_free(p); }

/* Takes every free block of class cls into hold (so that the next block
 * comes from a new span); returns how many. */
static size_t take_every_free_block(unsigned cls, void **hold, size_t max) {
  size_t nhold = 0;
  pl_central_drain(cls);
  for (;;) {
    pl_central_totals_t t;
    pl_central_totals(cls, &t);
    if (t.free_blocks == 0) return nhold;
    size_t got = pl_central_alloc_batch(cls, hold + nhold, max - nhold < 64 ? max - nhold : 64);
    assert_true(got > 0 && nhold + got < max);
    nhold += got;
  }
}

/* Pages of a partly used span on which every block is free in its
 * bitmap go back to the OS (mincore says so); pages with a block in use,
 * or with a block parked in the transfer array, stay, with their bytes;
 * the purged pages' blocks can be handed out again. */
static void test_purge_idle_pages(void **state) {
  (void)state;
  unsigned cls = pl_size_class(4096); /* spans of 4 pages, 2 blocks a page */
  size_t size = pl_class_info[cls].size;
  size_t per_page = PL_PAGE_SIZE / size;
  size_t nb = pl_class_info[cls].nblocks;
  assert_true(size == 4096 && nb >= 4 * per_page);
  /* Take every free block of the class, so that a new span is carved and
   * the blocks below come from it in order. */
  static void *hold[1 << 16];
  size_t nhold = take_every_free_block(cls, hold, 1 << 16);
  void **b = malloc(nb * sizeof *b);
  assert_non_null(b);
  assert_int_equal(take_blocks(cls, b, nb), nb);
  pl_span_t *s = pl_span_of(b[0]);
  for (size_t i = 0; i < nb; i++) {
    assert_ptr_equal(pl_span_of(b[i]), s);
    memset(b[i], (int)(i & 0x7f) | 1, size);
  }
  assert_int_equal(pl_os_resident((void *)s->start, (size_t)s->npages * PL_PAGE_SIZE),
                   (size_t)s->npages * PL_PAGE_SIZE);
  /* Page 1: all free, to the bitmap.  Page 2: all free but one block to
   * the bitmap.  Page 3: all free, through the transfer array (which
   * counts as in use).  Page 0 and the rest: in use. */
  uintptr_t base = s->start;
  void *back[64];
  size_t nback = 0;
  for (size_t i = 0; i < nb; i++) {
    size_t page = ((uintptr_t)b[i] - base) >> PL_PAGE_SHIFT;
    if (page == 1 || (page == 2 && ((uintptr_t)b[i] - base) % PL_PAGE_SIZE != 0)) back[nback++] = b[i];
  }
  pl_central_free_batch(cls, back, nback);
  pl_central_drain(cls); /* into the bitmap */
  nback = 0;
  for (size_t i = 0; i < nb; i++)
    if ((((uintptr_t)b[i] - base) >> PL_PAGE_SHIFT) == 3) back[nback++] = b[i];
  pl_central_free_batch(cls, back, nback); /* parked in the transfer array */
  size_t released = pl_central_purge_idle_pages(0);
  assert_true(released >= PL_PAGE_SIZE);
  assert_int_equal(pl_os_resident((void *)(base + PL_PAGE_SIZE), PL_PAGE_SIZE), 0);
  assert_int_equal(pl_os_resident((void *)(base + 2 * PL_PAGE_SIZE), PL_PAGE_SIZE), PL_PAGE_SIZE);
  assert_int_equal(pl_os_resident((void *)(base + 3 * PL_PAGE_SIZE), PL_PAGE_SIZE), PL_PAGE_SIZE);
  assert_int_equal(pl_os_resident((void *)base, PL_PAGE_SIZE), PL_PAGE_SIZE);
  for (size_t i = 0; i < nb; i++) {
    size_t page = ((uintptr_t)b[i] - base) >> PL_PAGE_SHIFT;
    if (page == 1 || page == 3 || (page == 2 && ((uintptr_t)b[i] - base) % PL_PAGE_SIZE != 0)) continue;
    const unsigned char *q = b[i];
    for (size_t k = 0; k < size; k++)
      if (q[k] != ((i & 0x7f) | 1)) fail_msg("block %zu byte %zu changed by the purge", i, k);
  }
  /* The purged page's words send free() to its slow path, which reports
   * a second free of a block there (its free key went with the page). */
  size_t pg = (base - s->chunk->base) >> PL_PAGE_SHIFT;
  const pl_pageword_t *pw = &s->chunk->page_info[pg * PL_PW_PER_PAGE];
  assert_int_equal(pw[1 * PL_PW_PER_PAGE].bin, 0);
  assert_int_equal(pw[1 * PL_PW_PER_PAGE + 1].bin, 0);
  assert_int_equal(pw[2 * PL_PW_PER_PAGE].bin, cls * 32);
  for (size_t i = 0; i < nb; i++)
    if ((((uintptr_t)b[i] - base) >> PL_PAGE_SHIFT) == 1) {
      purged_block = b[i];
      break;
    }
  tu_expect_abort("double free on a purged page", free_again, purged_block, "double free");
  checks_ok();
  /* A second pass finds nothing new. */
  assert_int_equal(pl_central_purge_idle_pages(0), 0);
  /* The purged page's blocks come back, usable. */
  void *again[8];
  pl_central_drain(cls);
  size_t got = take_blocks(cls, again, per_page);
  assert_int_equal(got, per_page);
  for (size_t i = 0; i < got; i++) memset(again[i], 0xee, size);
  assert_int_equal(pw[1 * PL_PW_PER_PAGE].bin, cls * 32); /* back */
  checks_ok();
  pl_central_free_batch(cls, again, got);
  for (size_t i = 0; i < nb; i++) {
    size_t page = ((uintptr_t)b[i] - base) >> PL_PAGE_SHIFT;
    if (page == 1 || page == 3 || (page == 2 && ((uintptr_t)b[i] - base) % PL_PAGE_SIZE != 0)) continue;
    pl_central_free_batch(cls, &b[i], 1);
  }
  pl_central_free_batch(cls, hold, nhold);
  pl_central_drain(cls);
  free(b);
  checks_ok();
}

/* A page is given back when every block overlapping it is free, also
 * blocks that start on the page before or end on the page after.  With
 * blocks of 3 KiB and pages of 8 KiB, a span of 3 pages holds 8 blocks:
 * page 0 blocks 0-2 (2 ends on page 1), page 1 blocks 2-5, page 2
 * blocks 5-7 (5 starts on page 1). */
static void purge_expect(unsigned cls, void **b, const int *idx, size_t n, size_t pages) {
  for (size_t i = 0; i < n; i++) pl_central_free_batch(cls, &b[idx[i]], 1);
  pl_central_drain(cls);
  assert_int_equal(pl_central_purge_idle_pages(0), pages * PL_PAGE_SIZE);
}

static void test_purge_idle_straddling(void **state) {
  (void)state;
  unsigned cls = pl_size_class(3072);
  size_t size = pl_class_info[cls].size, nb = pl_class_info[cls].nblocks;
  assert_true(size == 3072 && PL_PAGE_SIZE == 8192 && nb == 8);
  static void *hold[1 << 16];
  size_t nhold = take_every_free_block(cls, hold, 1 << 16);
  void *b[8];
  assert_int_equal(take_blocks(cls, b, nb), nb);
  pl_span_t *s = pl_span_of(b[0]);
  uintptr_t base = s->start;
  assert_int_equal(s->npages, 3);
  for (size_t i = 0; i < nb; i++) {
    assert_ptr_equal(b[i], (void *)(base + i * size));
    memset(b[i], 0x5a, size);
  }
  pl_central_purge_idle_pages(0); /* what other spans have idle goes first */
  /* Page 0 but for block 2, which ends on page 1; page 2 but for block
   * 5, which starts on page 1; the two in the middle of page 1: no page
   * is free. */
  purge_expect(cls, b, (const int[]){0, 1, 6, 7, 3, 4}, 6, 0);
  purge_expect(cls, b, (const int[]){2}, 1, 1); /* page 0 */
  assert_int_equal(pl_os_resident((void *)base, PL_PAGE_SIZE), 0);
  const unsigned char *q = b[5];
  for (size_t k = 0; k < size; k++)
    if (q[k] != 0x5a) fail_msg("byte %zu of block 5 changed by the purge", k);
  assert_int_equal(pl_os_resident((void *)(base + PL_PAGE_SIZE), 2 * PL_PAGE_SIZE), 2 * PL_PAGE_SIZE);
  purge_expect(cls, b, (const int[]){5}, 1, 2); /* pages 1 and 2 */
  checks_ok();
  pl_central_free_batch(cls, hold, nhold);
  pl_central_drain(cls);
  checks_ok();
}

/* A new span's page words start cold ({0, 0}, span.h).  A batch warms
 * two of them at most, each only once every free block starting under it
 * holds its free key; the blocks taken hold it too, until malloc clears
 * it.  So a free of a block nobody was handed, under a cold or a warm
 * word, is reported like a double free. */
static void cold_case(size_t request) {
  unsigned cls = pl_size_class(request);
  size_t size = pl_class_info[cls].size, nb = pl_class_info[cls].nblocks;
  size_t nw = pl_class_info[cls].pages * PL_PW_PER_PAGE;
  static void *hold[1 << 16];
  size_t nhold = take_every_free_block(cls, hold, 1 << 16);
  void **b = malloc(nb * sizeof *b);
  assert_non_null(b);
  size_t got = pl_central_alloc_batch(cls, b, nb);
  assert_true(got >= 1);
  pl_span_t *s = pl_span_of(b[0]);
  assert_int_equal(s->nfree, nb - got); /* a new span */
  uint64_t all = pl_low_bits64(nw), touched = 0;
  for (size_t i = 0; i < got; i++) {
    assert_ptr_equal(pl_span_of(b[i]), s);
    assert_ptr_equal(b[i], (void *)(s->start + i * size)); /* in index order */
    touched |= (uint64_t)1 << (((uintptr_t)b[i] - s->start) >> PL_PW_SHIFT);
  }
  uint64_t starts = 0; /* the words blocks start under */
  for (size_t i = 0; i < nb; i++) starts |= (uint64_t)1 << ((i * size) >> PL_PW_SHIFT);
  if (pl_config_hardening) {
    /* A batch warms two words at most (COLD_TAKE_WORDS; a build without
     * the checks writes no keys, and takes them all). */
    assert_true(__builtin_popcountll(touched) <= 2);
    if (__builtin_popcountll(starts) > 2) assert_true(got < nb);
  } else {
    assert_int_equal(got, nb);
  }
  assert_true(s->cold_words == (all & starts & ~touched));
  const pl_pageword_t *pw =
      &s->chunk->page_info[((s->start - s->chunk->base) >> PL_PAGE_SHIFT) * PL_PW_PER_PAGE];
  for (size_t k = 0; k < nw; k++) {
    if (((touched | ~starts) >> k) & 1) {
      assert_int_equal(pl_pw_class(pw[k]), cls);
    } else {
      assert_int_equal(pw[k].bin, 0);
      assert_int_equal(pw[k].span_neg, 0);
    }
  }
  /* Keys: in every block taken, and in every free block starting under a
   * warm word (in a build with the checks). */
  void *warm_free = NULL, *cold_free = NULL;
  for (size_t i = 0; i < nb; i++) {
    void *q = (void *)(s->start + i * size);
    bool is_free = (s->free_map[i / 64] >> (i % 64)) & 1;
    bool warm = (touched >> ((i * size) >> PL_PW_SHIFT)) & 1; /* (a block starts there) */
    if (is_free && warm && warm_free == NULL) warm_free = q;
    if (is_free && !warm && cold_free == NULL) cold_free = q;
    if (pl_config_hardening && is_free && warm && *(uintptr_t *)q != pl_free_key(q))
      fail_msg("class %zu: free block %zu under a warm word has no key", size, i);
  }
  if (pl_config_hardening)
    for (size_t i = 0; i < got; i++) assert_true(*(uintptr_t *)b[i] == pl_free_key(b[i]));
  /* The free blocks all lie past the batch: never handed out, which the
   * span knows (taken_end), so a free of one is of a pointer pallet never
   * gave, under a cold word (slow path) or a warm one (its key). */
  assert_int_equal(s->taken_end, got);
  if (cold_free != NULL)
    tu_expect_abort("free of a block under a cold word", free_again, cold_free, "invalid pointer");
  if (pl_config_hardening && warm_free != NULL)
    tu_expect_abort("free of a free block under a warm word", free_again, warm_free, "invalid pointer");
  /* A block of the batch given back to its span, then freed again: it was
   * handed out, and that is a double free. */
  if (pl_config_hardening && got >= 2) {
    pl_central_free_batch(cls, &b[got - 1], 1);
    pl_central_drain(cls);
    assert_int_equal(s->taken_end, got);
    tu_expect_abort("free of a block handed out and given back", free_again, b[got - 1],
                    "double free");
    got += take_blocks(cls, &b[got - 1], 1) - 1;
    assert_int_equal(s->taken_end, got);
  }
  checks_ok();
  /* The rest of the span, in more batches: every word ends up warm
   * (those no block starts under were warm from the start). */
  got += take_blocks(cls, b + got, nb - got);
  assert_true(s->cold_words == 0);
  checks_ok();
  pl_central_free_batch(cls, b, nb);
  pl_central_free_batch(cls, hold, nhold);
  pl_central_drain(cls);
  free(b);
  checks_ok();
}

static void test_cold_words(void **state) {
  (void)state;
  /* 1 page of 512 blocks; 3 pages of 512 blocks straddling pages; 4 pages
   * of 2 blocks each; 7 pages of 4 blocks, several pages each. */
  static const size_t sizes[] = {16, 48, 4096, 14336};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) cold_case(sizes[i]);
}

/* A pointer into the arena where no chunk is (its page words are
 * read-only zeros there): free() reports it, it does not crash. */
static void test_unused_arena_pointer(void **state) {
  (void)state;
  void *p = pallet_malloc(64); /* makes sure a chunk, and so the arena, exists */
  pallet_free(p);
  const char *na = getenv("PL_TEST_NO_ARENA");
  if (na != NULL && na[0] == '1') {
    assert_int_equal(pl_arena_size, 0);
    return;
  }
  assert_true(pl_arena_size >= 64 * PL_CHUNK_SIZE);
  char *q = (char *)(pl_arena_base + pl_arena_size - PL_CHUNK_SIZE + 4096);
  assert_null(pl_chunk_lookup(q));
  tu_expect_abort("free of a pointer into an unused arena slot", free_again, q, "invalid pointer");
  tu_expect_abort("free of a block-aligned pointer there", free_again, q + 60 * 1024, "invalid pointer");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batches),
      cmocka_unit_test(test_every_class),
      cmocka_unit_test(test_transfer_order),
      cmocka_unit_test(test_shards),
      cmocka_unit_test(test_flush_shard),
      cmocka_unit_test(test_batch_frees_many_spans),
      cmocka_unit_test(test_kept_spans),
      cmocka_unit_test(test_double_free),
      cmocka_unit_test(test_purge_idle_pages),
      cmocka_unit_test(test_purge_idle_straddling),
      cmocka_unit_test(test_cold_words),
      cmocka_unit_test(test_unused_arena_pointer),
  };
  return cmocka_run_group_tests_name("unit_central", tests, setup, NULL);
}
