/*
 * unit_tcache.c — unit tests of the thread caches (tcache.h): a thread's
 * cache is ACTIVE after pl_thread_start(); every bin keeps
 * 0 <= count <= limit <= cap and its own slots; pushes past the limit
 * flush; repeated underflow grows the limit up to the cap; the byte budget
 * (pl_tcache_max_bytes) holds after refills; pl_tcache_holds; and
 * pl_tcache_destroy gives every block back to the central lists and leaves
 * the thread DEAD, still able to allocate through the central lists.
 *
 * The caps depend on the budget, read by pl_tcache_init_caps(), so the
 * budget is set in the group setup, before any cache exists.  The test of
 * a budget so small that some caps would be zero runs in a child forked
 * before the parent makes its cache.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include "central.h"
#include "large.h"
#include "common.h"
#include "lifecycle.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"
#include "tcache.h"

#include <pthread.h>
#include <semaphore.h>

#define BUDGET ((size_t)1 << 20)

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  /* The purge rules these tests check are the base ones: no room kept
   * for the recent peak of active pages (unit_span tests that). */
  pl_span_peak_ms = 0;
  /* No cache exists yet in this process: the caps may be recomputed. */
  if (pl_tc != &pl_tcache_boot) return -1;
  pl_tcache_max_bytes = BUDGET;
  pl_tcache_init_caps();
  return 0;
}

/* Whether bin c of tc has grown into an array of its own (a burst). */
static bool in_burst(const pl_tcache_t *tc, unsigned c) {
  return tc->arr[c] != NULL && tc->arr[c] == tc->burst_slots[c];
}

/* The cap of bin c as it is now: its round cap (the slots of its own
 * array) once it has grown past the ordinary one. */
static uint32_t cap_now(const pl_tcache_t *tc, unsigned c) {
  return in_burst(tc, c) ? pl_tcache_round_cap[c] : pl_tcache_cap[c];
}

/* Slots of the full arrays, which come before the starter arrays in a
 * cache's slot storage (tcache.h). */
static size_t full_total(void) {
  size_t t = 0;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) t += pl_tcache_cap[c];
  return t;
}

/* The slots of the array bin c is in now: its burst array, its starter
 * array or its full array. */
static uint32_t room_now(const pl_tcache_t *tc, unsigned c) {
  if (in_burst(tc, c)) return pl_tcache_round_cap[c];
  if (tc->arr[c] >= tc->slot_storage + full_total()) return PL_TCACHE_STARTER_SLOTS;
  return pl_tcache_cap[c];
}

/* The first violated bin invariant of tc, or NULL. */
static const char *bin_violation(const pl_tcache_t *tc, unsigned *where) {
  static char msg[160];
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    *where = c;
    uint32_t room = room_now(tc, c);
    if (pl_bin_count(tc, c) > pl_bin_limit(tc, c) || pl_bin_limit(tc, c) > room) {
      snprintf(msg, sizeof msg, "class %u: count %u, limit %u, room %u", c,
               pl_bin_count(tc, c), pl_bin_limit(tc, c), room);
      return msg;
    }
    /* No two bins' arrays overlap. */
    for (unsigned d = 1; d < c; d++) {
      void **lo = tc->arr[d], **hi = lo + room_now(tc, d);
      if (tc->arr[c] < hi && lo < tc->arr[c] + room) {
        snprintf(msg, sizeof msg, "class %u: slots overlap class %u's", c, d);
        return msg;
      }
    }
    for (uint32_t i = 0; i < pl_bin_count(tc, c); i++) {
      pl_span_t *s = pl_span_of(tc->arr[c][i]);
      if (s == NULL || s->state != PL_SPAN_SMALL || s->cls != c) {
        snprintf(msg, sizeof msg, "class %u: slot %u holds %p, not a block of the class",
                 c, i, tc->arr[c][i]);
        return msg;
      }
    }
  }
  return NULL;
}

static void bins_ok(void) {
  unsigned c;
  const char *v = bin_violation(pl_tc, &c);
  if (v) fail_msg("bin invariant broken: %s", v);
}

/* Runs fn(arg) in a new thread (a fresh cache) and waits for it. */
static void run_in_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* The bin invariants of a worker thread's cache and the central lists'
 * check, as the worker found them at its end (bins_check), reported by
 * the test's thread (bins_check_ok). */
struct bins_check {
  const char *broken;
  char msg[160];
  bool central_ok;
};
static void bins_check(struct bins_check *c, const pl_tcache_t *tc) {
  unsigned where;
  c->broken = bin_violation(tc, &where);
  if (c->broken) snprintf(c->msg, sizeof c->msg, "%s", c->broken);
  c->central_ok = pl_central_check() == 0;
}
static void bins_check_ok(const struct bins_check *c) {
  if (c->broken) fail_msg("bin invariant broken: %s", c->msg);
  if (!c->central_ok) fail_msg("the central lists' check failed");
}

static size_t cached_bytes(const pl_tcache_t *tc) {
  size_t sum = 0;
  for (unsigned c = 1; c <= PL_NCLASSES; c++)
    sum += (size_t)pl_bin_count(tc, c) * pl_class_size(c);
  return sum;
}

/* ---- a budget smaller than some classes ------------------------------ */

#define TINY_BUDGET ((size_t)256 << 10)

/* In a child forked before any cache exists: caps for this budget, and
 * the child's own cache. */
static void child_start(size_t budget) {
  pl_tcache_max_bytes = budget;
  pl_tcache_init_caps();
  pl_thread_start();
  TU_CHILD_REQUIRE(pl_tc->state == PL_TC_ACTIVE);
}

static void child_tiny_budget(void *arg) {
  (void)arg;
  child_start(TINY_BUDGET);
  unsigned where;
  const char *v;
  /* Two classes above half the budget. */
  size_t big = 200 << 10, other = 150 << 10;
  unsigned cb = pl_size_class(big), co = pl_size_class(other);
  TU_CHILD_REQUIRE(cb != co);
  void *p = pallet_malloc(big);
  TU_CHILD_REQUIRE(p != NULL);
  pallet_free(p);
  v = bin_violation(pl_tc, &where);
  if (v) fprintf(stderr, "after malloc+free of %zu bytes: %s\n", big, v);
  void *q = pallet_malloc(other);
  void *p2 = pallet_malloc(big);
  TU_CHILD_REQUIRE(q != NULL && p2 != NULL);
  if (p2 == q)
    fprintf(stderr, "malloc(%zu) returned %p, which malloc(%zu) returned and is live\n",
            big, p2, other);
  v = bin_violation(pl_tc, &where);
  if (v) fprintf(stderr, "at the end: %s\n", v);
  TU_CHILD_REQUIRE(p2 != q);
  TU_CHILD_REQUIRE(bin_violation(pl_tc, &where) == NULL);
  pallet_free(q);
  pallet_free(p2);
}

/* Runs fn in a child forked while this process has no cache yet, so the
 * child may compute caps for a budget of its own; fails with what and
 * the child's messages unless the child exits with 0. */
static void run_budget_child(void (*fn)(void *), const char *what) {
  assert_ptr_equal(pl_tc, &pl_tcache_boot);
  struct tu_child_result res;
  char how[128];
  tu_run_child(fn, NULL, 20, &res);
  tu_describe_status(res.status, how, sizeof how);
  if (!(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0))
    fail_msg("%s; the child %s:\n%s", what, how, res.err);
}

/* Must run first: the parent has no cache yet, so the child may compute
 * caps for its own budget. */
static void test_tiny_budget(void **state) {
  (void)state;
  char what[128];
  snprintf(what, sizeof what,
           "with a %zu-byte budget, malloc/free of blocks above half the budget must keep the "
           "cache sound", TINY_BUDGET);
  run_budget_child(child_tiny_budget, what);
}

/* ---- rounds past the burst caps, with the default budget ------------- */

/* Rounds of 30 blocks of 40 KB and of 4 blocks of 200 KB, with the
 * default 8 MiB budget: more than those classes' burst caps (12 and 2
 * blocks, 512 KiB of them), within their round caps (tcache.c: half
 * the budget).  Each round used to send most of its blocks through the
 * central lists and the span heap (26x tcmalloc's time with 30 x 40 KB
 * and two threads); now the bin grows past its burst cap, and the last
 * rounds make no refill or flush. */
static void child_rounds_past_burst_cap(void *arg) {
  (void)arg;
  child_start(PL_TCACHE_MAX_DEFAULT);
  static const struct { size_t n, per_round; } cases[] = {{40000, 30}, {200000, 4}};
  void *b[30];
  for (size_t k = 0; k < 2; k++) {
    unsigned cls = pl_size_class(cases[k].n);
    TU_CHILD_REQUIRE(cases[k].per_round > pl_tcache_burst_cap[cls]);
    TU_CHILD_REQUIRE(cases[k].per_round <= pl_tcache_round_cap[cls]);
    uint64_t at = 0;
    for (int round = 0; round < 24; round++) {
      if (round == 16) at = pl_tc->events;
      for (size_t i = 0; i < cases[k].per_round; i++) {
        b[i] = pallet_malloc(cases[k].n);
        TU_CHILD_REQUIRE(b[i] != NULL);
        memset(b[i], (int)i, 64);
      }
      for (size_t i = 0; i < cases[k].per_round; i++) pallet_free(b[i]);
    }
    uint64_t late = pl_tc->events - at;
    uint32_t limit = pl_tc->real_limit[cls];
    if (late != 0 || limit < cases[k].per_round || limit > pl_tcache_round_cap[cls])
      fprintf(stderr, "rounds of %zu blocks of %zu B (burst cap %u, round cap %u): %llu refills "
              "and flushes in the last 8 rounds, limit %u\n", cases[k].per_round, cases[k].n,
              pl_tcache_burst_cap[cls], pl_tcache_round_cap[cls], (unsigned long long)late, limit);
    TU_CHILD_REQUIRE(late == 0 && limit >= cases[k].per_round && limit <= pl_tcache_round_cap[cls]);
  }
  unsigned where;
  const char *v = bin_violation(pl_tc, &where);
  if (v) fprintf(stderr, "%s\n", v);
  TU_CHILD_REQUIRE(v == NULL);
  TU_CHILD_REQUIRE(pl_central_check() == 0);
}

/* Must run before the parent makes its cache, as test_tiny_budget. */
static void test_rounds_past_burst_cap(void **state) {
  (void)state;
  run_budget_child(child_rounds_past_burst_cap, "rounds past the burst caps");
}

/* ---- the cache of this thread --------------------------------------- */

static void test_active(void **state) {
  (void)state;
  size_t live0 = pl_tcache_live();
  pl_thread_start();
  pl_tcache_t *tc = pl_tc;
  assert_ptr_not_equal(tc, &pl_tcache_boot);
  assert_int_equal(tc->state, PL_TC_ACTIVE);
  assert_int_equal(pl_tcache_live(), live0 + 1);
  pl_thread_start(); /* idempotent */
  assert_ptr_equal(pl_tc, tc);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    assert_int_equal(pl_bin_count(tc, c), 0);
    assert_true(pl_tcache_cap[c] >= 1);
    assert_true((size_t)pl_tcache_cap[c] * pl_class_size(c) <= BUDGET / 2);
  }
  bins_ok();
}

/* malloc's two lookup tables name the bin of every request's class:
 * pl_bin_lookup up to 1 KiB, pl_bin_lookup_mid by 128-byte steps above. */
static void test_bin_lookup(void **state) {
  (void)state;
  pl_thread_start();
  pl_tcache_t *tc = pl_tc;
  assert_ptr_equal(tc->bins, pl_tls.bins);
  for (size_t n = 1; n <= PL_SMALL_MAX; n++) {
    pl_bin_t *want = &tc->bins[pl_size_class(n)];
    unsigned off;
    assert_true(pl_bin_offset(n, &off));
    pl_bin_t *got = (pl_bin_t *)((char *)tc->bins + off);
    if (got != want) fail_msg("request %zu: bin %td, class %u", n, got - tc->bins, pl_size_class(n));
    /* The fast paths' handle reaches the same bin (through %fs on
     * x86-64): its fields read back what the bin holds. */
    pl_mybin_t h = pl_my_bin(off);
    if (PL_MYBIN_LOAD(h, top) != want->top || PL_MYBIN_LOAD(h, floor) != want->floor ||
        !PL_MYBIN_EQ(want->floor, h, floor) || PL_MYBIN_MUL_RECIP(1, h) != want->recip)
      fail_msg("request %zu: the fast paths' handle does not reach bin %u", n, pl_size_class(n));
  }
}

/* Pushes past the limit flush: count stays <= limit <= cap. */
static void test_limit_flush(void **state) {
  (void)state;
  const size_t n = 48;
  unsigned cls = pl_size_class(n);
  size_t total = 4 * (size_t)pl_tcache_cap[cls] + 7;
  void **b = calloc(total, sizeof *b);
  assert_non_null(b);
  for (size_t i = 0; i < total; i++) {
    b[i] = pallet_malloc(n);
    assert_non_null(b[i]);
    assert_true(pl_bin_count(pl_tc, cls) <= pl_bin_limit(pl_tc, cls) && pl_bin_limit(pl_tc, cls) <= cap_now(pl_tc, cls));
  }
  bins_ok();
  size_t flushes = 0;
  for (size_t i = 0; i < total; i++) {
    uint32_t before = pl_bin_count(pl_tc, cls);
    pallet_free(b[i]);
    if (pl_bin_count(pl_tc, cls) <= before) flushes++;
    if (!(pl_bin_count(pl_tc, cls) <= pl_bin_limit(pl_tc, cls) && pl_bin_limit(pl_tc, cls) <= cap_now(pl_tc, cls)))
      fail_msg("after %zu frees: count %u, limit %u, cap %u", i + 1, pl_bin_count(pl_tc, cls),
               pl_bin_limit(pl_tc, cls), cap_now(pl_tc, cls));
    assert_true(pl_tcache_holds(pl_tc, cls, b[i]));
  }
  assert_true(flushes > 0);
  assert_true(pl_bin_count(pl_tc, cls) >= 1);
  bins_ok();
  assert_int_equal(pl_central_check(), 0);
  free(b);
}

/* Running empty again and again grows the limit, up to the cap. */
static void test_limit_growth(void **state) {
  (void)state;
  const size_t n = 160;
  unsigned cls = pl_size_class(n);
  uint32_t cap = pl_tcache_cap[cls];
  assert_int_equal(pl_bin_count(pl_tc, cls), 0); /* untouched so far */
  assert_true(pl_bin_limit(pl_tc, cls) < cap);
  size_t max = 8 * (size_t)cap + 64, nb = 0, refills = 0;
  void **b = calloc(max, sizeof *b);
  assert_non_null(b);
  while (pl_bin_limit(pl_tc, cls) < cap) {
    uint32_t before = pl_bin_limit(pl_tc, cls);
    bool empty = pl_bin_count(pl_tc, cls) == 0;
    assert_true(nb < max);
    b[nb] = pallet_malloc(n);
    assert_non_null(b[nb]);
    nb++;
    if (empty) {
      refills++;
      if (pl_bin_limit(pl_tc, cls) <= before)
        fail_msg("refill %zu: limit %u did not grow (cap %u)", refills, pl_bin_limit(pl_tc, cls), cap);
    } else {
      assert_int_equal(pl_bin_limit(pl_tc, cls), before);
    }
    assert_true(pl_bin_count(pl_tc, cls) <= pl_bin_limit(pl_tc, cls) && pl_bin_limit(pl_tc, cls) <= cap);
  }
  assert_int_equal(pl_bin_limit(pl_tc, cls), cap);
  assert_true(refills <= 16);
  /* And it stays there. */
  for (size_t i = 0; i < 3 * (size_t)cap && nb < max; i++) {
    b[nb] = pallet_malloc(n);
    assert_non_null(b[nb++]);
    assert_int_equal(pl_bin_limit(pl_tc, cls), cap);
  }
  for (size_t i = 0; i < nb; i++) pallet_free(b[i]);
  bins_ok();
  free(b);
}

/* A class used in bursts (eight caps' worth of blocks allocated, then all
 * freed, round after round) grows past its cap into an array of its own,
 * up to its burst cap (512 KiB of blocks up to 256 bytes, 1 MiB above up
 * to 32 KiB, within half the budget; test_big_class_growth has the
 * classes past that), and no block is handed out twice across the
 * switch.  A class above 256 bytes grows past 64 KiB of blocks too (on
 * longer runs, tcache.c), and so does the class of 32 KiB blocks, whose
 * cap is already 256 KiB of them. */
static void test_burst_growth(void **state) {
  (void)state;
  static const size_t sizes[3] = {80, 3000, 32768};
  for (int k = 0; k < 3; k++) {
    size_t n = sizes[k];
    unsigned cls = pl_size_class(n);
    size_t size = pl_class_size(cls);
    uint32_t cap = pl_tcache_cap[cls];
    size_t burst_bytes = cap >= 64 ? (size_t)512 << 10 : (size_t)1 << 20;
    if (burst_bytes > pl_tcache_max_bytes / 2) burst_bytes = pl_tcache_max_bytes / 2;
    bool may_burst = burst_bytes / size > cap;
    assert_true(may_burst);
    assert_int_equal(pl_tcache_burst_cap[cls], burst_bytes / size);
    size_t nb = 8 * (size_t)cap;
    void **b = calloc(nb, sizeof *b);
    assert_non_null(b);
    for (int round = 0; round < 8; round++) {
      for (size_t i = 0; i < nb; i++) {
        b[i] = pallet_malloc(n);
        assert_non_null(b[i]);
        memcpy(b[i], &i, sizeof i);
      }
      for (size_t i = 0; i < nb; i++) {
        size_t seen;
        memcpy(&seen, b[i], sizeof seen);
        if (seen != i) fail_msg("round %d: block %zu was handed out twice", round, i);
      }
      for (size_t i = 0; i < nb; i++) pallet_free(b[i]);
      bins_ok();
    }
    uint32_t limit = pl_tc->real_limit[cls]; /* (end may be the trim's ceiling) */
    if (may_burst) {
      if (!in_burst(pl_tc, cls) || limit <= cap || limit > pl_tcache_burst_cap[cls])
        fail_msg("%zu-byte bursts: limit %u (cap %u, burst cap %u), own array %d", n, limit, cap,
                 pl_tcache_burst_cap[cls], in_burst(pl_tc, cls));
      if (cap < 64 && (size_t)limit * size <= ((size_t)64 << 10))
        fail_msg("%zu-byte bursts of %zu blocks: limit %u stopped at 64 KiB of blocks", n, nb,
                 limit);
    } else {
      assert_false(in_burst(pl_tc, cls));
      assert_true(limit <= cap);
    }
    assert_int_equal(pl_central_check(), 0);
    free(b);
  }
}

/* Bursts that free a temporary for each block they keep (a parser
 * building nodes of a few kinds) are bursts too.  Rounds of 8 x cap
 * blocks of four classes in turn (80-128 B, or 2500-4000 B), each
 * allocated along with a 200-byte temporary that is freed at once, then
 * all freed, grow the four bins past their caps, as test_burst_growth's
 * rounds without temporaries do.  Counting every free against the
 * blocks of the bin's own refills alone (the first form of
 * burst_refill) left these bins at their caps: the thread frees four
 * temporaries for each block of a class, and such rounds took
 * 1.35x-1.46x the instructions (callgrind, two shapes of this). */
#define TEMP_KINDS 4
struct temp_result {
  const size_t *sizes;
  uint32_t cap[TEMP_KINDS], limit[TEMP_KINDS];
  bool own_array[TEMP_KINDS], twice;
  struct bins_check bins;
};

static void *temp_worker(void *arg) {
  struct temp_result *r = arg;
  pl_thread_start();
  uint32_t cap = UINT32_MAX;
  for (int j = 0; j < TEMP_KINDS; j++) {
    r->cap[j] = pl_tcache_cap[pl_size_class(r->sizes[j])];
    if (r->cap[j] < cap) cap = r->cap[j];
  }
  size_t nb = 8 * TEMP_KINDS * (size_t)cap;
  void **b = calloc(nb, sizeof *b);
  if (b == NULL) return NULL;
  for (int round = 0; round < 8; round++) {
    for (size_t i = 0; i < nb; i++) {
      void *t = pallet_malloc(200);
      memset(t, (int)i, 200);
      b[i] = pallet_malloc(r->sizes[i % TEMP_KINDS]);
      memcpy(b[i], &i, sizeof i);
      pallet_free(t);
    }
    for (size_t i = 0; i < nb; i++) {
      size_t seen;
      memcpy(&seen, b[i], sizeof seen);
      if (seen != i) r->twice = true;
      pallet_free(b[i]);
    }
  }
  for (int j = 0; j < TEMP_KINDS; j++) {
    unsigned cls = pl_size_class(r->sizes[j]);
    r->limit[j] = pl_tc->real_limit[cls];
    r->own_array[j] = in_burst(pl_tc, cls);
  }
  free(b);
  bins_check(&r->bins, pl_tc);
  return NULL;
}

static void test_burst_growth_with_temporaries(void **state) {
  (void)state;
  static const size_t sizes[2][TEMP_KINDS] = {{80, 96, 112, 128}, {2500, 3000, 3500, 4000}};
  for (int k = 0; k < 2; k++) {
    struct temp_result r = {.sizes = sizes[k]};
    for (int j = 0; j < TEMP_KINDS; j++) {
      unsigned cls = pl_size_class(sizes[k][j]);
      assert_true(pl_tcache_burst_cap[cls] > pl_tcache_cap[cls]);
      for (int i = 0; i < j; i++) assert_int_not_equal(cls, pl_size_class(sizes[k][i]));
    }
    run_in_thread(temp_worker, &r); /* a fresh cache */
    bins_check_ok(&r.bins);
    assert_false(r.twice);
    for (int j = 0; j < TEMP_KINDS; j++)
      if (!r.own_array[j] || r.limit[j] <= r.cap[j])
        fail_msg("%zu-byte blocks in bursts with temporaries: limit %u (cap %u), own array %d",
                 sizes[k][j], r.limit[j], r.cap[j], r.own_array[j]);
  }
}

/* rounds rounds of: batch blocks of n bytes allocated and tagged, then
 * each checked (no block handed out twice) and freed. */
static void burst_rounds(size_t n, size_t batch, int rounds) {
  void **b = calloc(batch, sizeof *b);
  assert_non_null(b);
  for (int round = 0; round < rounds; round++) {
    for (size_t i = 0; i < batch; i++) {
      assert_non_null(b[i] = pallet_malloc(n));
      memcpy(b[i], &i, sizeof i);
    }
    for (size_t i = 0; i < batch; i++) {
      size_t seen;
      memcpy(&seen, b[i], sizeof seen);
      if (seen != i) fail_msg("round %d: block %zu was handed out twice", round, i);
      pallet_free(b[i]);
    }
    bins_ok();
  }
  free(b);
}

/* A small class grown past its cap in bursts keeps growing on rounds
 * that need a little more than its limit: with one refill and one flush
 * a round, the runs of two that start the growth never come again.
 * Rounds of 1433 blocks of 128 B (cap 128) grow the bin by runs to 1024
 * (a round then needs 1.4 times the limit); bench-bursts stalled there,
 * sending a third of each batch through the central lists every round. */
static void test_burst_keeps_growing(void **state) {
  (void)state;
  const size_t n = 128, batch = 1433;
  unsigned cls = pl_size_class(n);
  assert_true(pl_tcache_burst_cap[cls] >= 2 * batch);
  burst_rounds(n, batch, 16);
  uint32_t limit = pl_tc->real_limit[cls];
  if (!in_burst(pl_tc, cls) || limit < batch)
    fail_msg("rounds of %zu blocks: the limit stayed at %u", batch, limit);
  assert_int_equal(pl_central_check(), 0);
}

/* A class above 32 KiB (spans of one or two blocks) used in bursts grows
 * past its cap: rounds of 16 blocks of 64 KiB (cap 4, burst cap 8 with
 * this test's 1 MiB budget) end with the bin past its cap, within its
 * burst cap, and no block handed out twice.  Before, its burst cap was
 * its cap, and every round sent its blocks through the heap.  So does
 * the 32 KiB class (cap 8, burst cap 16 with this budget) under rounds
 * of 32 blocks; its burst cap was its cap before BURST_LONG_BYTES went
 * from 256 KiB to 1 MiB. */
static void test_big_class_growth(void **state) {
  (void)state;
  static const size_t sizes[2] = {65536, 32768};
  for (int k = 0; k < 2; k++) {
    size_t n = sizes[k];
    unsigned cls = pl_size_class(n);
    uint32_t cap = pl_tcache_cap[cls];
    size_t batch = 4 * (size_t)cap;
    assert_true(pl_tcache_burst_cap[cls] >= 2 * cap);
    burst_rounds(n, batch, 8);
    uint32_t limit = pl_tc->real_limit[cls];
    if (!in_burst(pl_tc, cls) || limit <= cap || limit > pl_tcache_burst_cap[cls])
      fail_msg("rounds of %zu blocks of %zu B: limit %u (cap %u, burst cap %u), own array %d",
               batch, n, limit, cap, pl_tcache_burst_cap[cls], in_burst(pl_tc, cls));
    assert_int_equal(pl_central_check(), 0);
  }
}

/* Rounds of as many blocks as a bin's cap, or a few times more (a
 * request's buffers: allocated, then all freed), in a thread of its own
 * (a fresh cache).  At the cap, such a round used to refill near the
 * end of its allocations and flush near the end of its frees, round
 * after round (the refill brings half a limit, so the frees overflow,
 * and the flush leaves the bin short of the next round): two trips to
 * the central lists a round, for ever.  The bin now grows past its cap
 * after CHURN_RUNS such rounds (tcache.c), and the later rounds stay in
 * the cache: no refill, no flush. */
struct churn_result {
  uint32_t cap, round_cap, limit;
  uint64_t late_events; /* refills and flushes in the last 8 rounds */
  struct bins_check bins;
  size_t n, per_round;
};

static void *churn_worker(void *arg) {
  struct churn_result *r = arg;
  unsigned cls = pl_size_class(r->n);
  void **b = calloc(r->per_round, sizeof *b);
  if (b == NULL) return NULL;
  pl_thread_start();
  pl_tcache_t *tc = pl_tc;
  r->cap = pl_tcache_cap[cls];
  r->round_cap = pl_tcache_round_cap[cls];
  uint64_t at = 0;
  for (int round = 0; round < 24; round++) {
    if (round == 16) at = tc->events;
    for (size_t i = 0; i < r->per_round; i++) {
      b[i] = pallet_malloc(r->n);
      if (b[i] == NULL) return NULL;
      memset(b[i], (int)i, 16);
    }
    for (size_t i = 0; i < r->per_round; i++) pallet_free(b[i]);
  }
  r->late_events = tc->events - at;
  r->limit = tc->real_limit[cls];
  bins_check(&r->bins, tc);
  free(b);
  return NULL;
}

static void test_rounds_at_cap(void **state) {
  (void)state;
  static const struct { size_t n, caps; } cases[] = {
      {1000, 1}, {1000, 2}, {9000, 1}, {9000, 2}, {300, 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    struct churn_result r = {.n = cases[k].n};
    unsigned cls = pl_size_class(r.n);
    r.per_round = cases[k].caps * pl_tcache_cap[cls];
    assert_true(r.per_round <= pl_tcache_round_cap[cls]); /* the bin can hold a round */
    run_in_thread(churn_worker, &r);
    bins_check_ok(&r.bins);
    if (r.late_events != 0 || r.limit < r.per_round || r.limit > r.round_cap)
      fail_msg("rounds of %zu blocks of %zu B (cap %u, round cap %u): %llu refills and flushes "
               "in the last 8 rounds, limit %u",
               r.per_round, r.n, r.cap, r.round_cap, (unsigned long long)r.late_events, r.limit);
  }
  assert_int_equal(pl_central_check(), 0);
}

/* The trim (tcache.c), in a thread of its own (a fresh cache): a bin
 * grown past its cap by rounds of 2048 blocks of 48 B keeps a limit that
 * holds a round while the rounds go on (each round fills it past half
 * its limit and runs it nearly empty), and, once the thread only
 * mallocs and frees one block at a time, comes back to its cap and
 * gives back what it held: the count never went below the trim's floor,
 * nor up to its ceiling. */
struct trim_result {
  uint32_t cap, grown, after_rounds, after_quiet, held_quiet;
  uint64_t slow_events; /* refills and flushes in rounds 8 to 47 */
  struct bins_check bins;
};

static void *trim_worker(void *arg) {
  struct trim_result *r = arg;
  enum { ROUND = 2048 };
  const size_t n = 48;
  unsigned cls = pl_size_class(n);
  void **b = calloc(ROUND, sizeof *b);
  if (b == NULL) return NULL;
  pl_thread_start();
  pl_tcache_t *tc = pl_tc;
  r->cap = pl_tcache_cap[cls];
  for (int round = 0; round < 48; round++) {
    for (size_t i = 0; i < ROUND; i++) b[i] = pallet_malloc(n);
    for (size_t i = 0; i < ROUND; i++) pallet_free(b[i]);
    /* 8 rounds grow it; 40 more make 80k frees: 6 or 7 looks at it. */
    if (round == 7) {
      r->grown = tc->real_limit[cls];
      r->slow_events = tc->events;
    }
  }
  r->after_rounds = tc->real_limit[cls];
  r->slow_events = tc->events - r->slow_events;
  for (size_t i = 0; i < 200000; i++) pallet_free(pallet_malloc(n));
  r->after_quiet = tc->real_limit[cls];
  r->held_quiet = pl_bin_count(tc, cls);
  free(b);
  bins_check(&r->bins, tc);
  return NULL;
}

static void test_trim(void **state) {
  (void)state;
  struct trim_result r = {0};
  run_in_thread(trim_worker, &r);
  bins_check_ok(&r.bins);
  if (r.grown <= r.cap) fail_msg("rounds of 2048: limit %u, not past the cap %u", r.grown, r.cap);
  if (r.after_rounds < 2048 || r.slow_events > 2)
    fail_msg("rounds of 2048 went on: limit %u, %llu refills and flushes in 40 rounds",
             r.after_rounds, (unsigned long long)r.slow_events);
  if (r.after_quiet != r.cap || r.held_quiet > r.cap / 2)
    fail_msg("one block at a time: limit %u (cap %u), %u blocks held", r.after_quiet, r.cap,
             r.held_quiet);
}

/* A walk's run grows a bin past its cap where the heap is big, and not
 * where the thread's cache is a big part of it.  The worker drives one
 * class of 1000 B (cap 16) through such a run: refills in a row, each
 * after 64 frees of blocks of 200 B that the test's thread made (so
 * more frees than burst_refill allows for a burst), which also raise
 * the limit to the cap; two flushes in a row; then a refill, which
 * decides.  Its cache holds about 600 KB besides: four blocks of each
 * class of 10-32 KiB here, made by the test's thread, freed into it.
 * Without more, the heap in use is a few MiB, under 16 times that: the
 * limit must stay at the cap.  With 64 blocks of 1 MiB live (a heap of
 * over 64 MiB, more than 16 times the cache times the two or three
 * caches of the process) it must grow. */
enum { WG_FILL = 32, WG_Y = 512, WG_X = 64, WG_BIG = 64 };
struct walk_grow_arg {
  void *fill[WG_FILL], *y[WG_Y], *x[WG_X];
  uint32_t cap, before, after;
  size_t cache, heap;
  unsigned burst_refills, flushes; /* (test_burst_run_ends_at_flush) */
};

/* The worker's hold on class X (1000 B): its blocks out, the blocks of
 * 200 B it has yet to free, the reserve of X blocks from the test's
 * thread.  Starting, it frees the fill blocks into its cache. */
struct xdrive {
  struct walk_grow_arg *a;
  pl_tcache_t *tc;
  unsigned cx;
  void *x[WG_X + 128];
  size_t nx, ny, nres;
};

static void xdrive_start(struct xdrive *d, struct walk_grow_arg *a) {
  memset(d, 0, sizeof *d);
  d->a = a;
  pl_thread_start();
  d->tc = pl_tc;
  d->cx = pl_size_class(1000);
  d->ny = WG_Y;
  d->nres = WG_X;
  a->cap = pl_tcache_cap[d->cx];
  for (int i = 0; i < WG_FILL; i++) pallet_free(a->fill[i]);
}
/* X's bin run empty, then one malloc more: a refill. */
static void xdrive_refill(struct xdrive *d) {
  while (pl_bin_count(d->tc, d->cx) > 0) d->x[d->nx++] = pallet_malloc(1000);
  d->x[d->nx++] = pallet_malloc(1000);
}
/* 64 frees of other blocks, then a refill: not a burst refill. */
static void xdrive_walk_refill(struct xdrive *d) {
  for (int i = 0; i < 64; i++) pallet_free(d->a->y[--d->ny]);
  xdrive_refill(d);
}
/* X's bin filled to its limit, then one free more: a flush (the
 * reserve joins the blocks out at the first). */
static void xdrive_flush(struct xdrive *d) {
  while (d->nres > 0) d->x[d->nx++] = d->a->x[--d->nres];
  while (pl_bin_count(d->tc, d->cx) < d->tc->real_limit[d->cx] && d->nx > 1)
    pallet_free(d->x[--d->nx]);
  pallet_free(d->x[--d->nx]);
}
static void xdrive_end(struct xdrive *d) {
  d->a->after = d->tc->real_limit[d->cx];
  while (d->nx > 0) pallet_free(d->x[--d->nx]);
  while (d->ny > 0) pallet_free(d->a->y[--d->ny]);
}

static void *walk_grow_worker(void *arg) {
  struct walk_grow_arg *a = arg;
  static struct xdrive d;
  xdrive_start(&d, a);
  /* Refills in a row, each after 64 frees, until the limit is at the
   * cap, and at least two. */
  for (int r = 0; r < 2 || (r < 6 && d.tc->real_limit[d.cx] < a->cap); r++) xdrive_walk_refill(&d);
  a->before = d.tc->real_limit[d.cx];
  xdrive_flush(&d);
  xdrive_flush(&d);
  /* The deciding refill. */
  a->cache = cached_bytes(d.tc);
  a->heap = pl_span_active_bytes();
  xdrive_refill(&d);
  xdrive_end(&d);
  return NULL;
}

/* Runs worker on a, with the blocks it frees made here. */
static void walk_grow_case(struct walk_grow_arg *a, void *(*worker)(void *)) {
  static const size_t fill_sizes[] = {12 << 10, 14 << 10, 16 << 10, 20 << 10,
                                      24 << 10, 28 << 10, 32 << 10, 10 << 10};
  for (int i = 0; i < WG_FILL; i++) assert_non_null(a->fill[i] = pallet_malloc(fill_sizes[i % 8]));
  for (int i = 0; i < WG_Y; i++) assert_non_null(a->y[i] = pallet_malloc(200));
  for (int i = 0; i < WG_X; i++) assert_non_null(a->x[i] = pallet_malloc(1000));
  run_in_thread(worker, a);
  assert_int_equal(a->before, a->cap);
}

static void test_walk_growth_share(void **state) {
  (void)state;
  static struct walk_grow_arg small, big;
  void *live[WG_BIG];
  walk_grow_case(&small, walk_grow_worker);
  for (int i = 0; i < WG_BIG; i++) assert_non_null(live[i] = pallet_malloc((size_t)1 << 20));
  walk_grow_case(&big, walk_grow_worker);
  for (int i = 0; i < WG_BIG; i++) pallet_free(live[i]);
  /* The setups are what the two cases need. */
  if (small.cache * PL_TCACHE_WALK_SHARE <= small.heap || big.cache * PL_TCACHE_WALK_SHARE > big.heap)
    fail_msg("cache %zu of a heap of %zu, and %zu of %zu with 64 MiB live", small.cache,
             small.heap, big.cache, big.heap);
  if (small.after != small.cap)
    fail_msg("a walk's run grew the bin to %u (cap %u) with %zu bytes cached of %zu in use",
             small.after, small.cap, small.cache, small.heap);
  if (big.after <= big.cap)
    fail_msg("a walk's run left the bin at %u (cap %u) with %zu bytes cached of %zu in use",
             big.after, big.cap, big.cache, big.heap);
  assert_int_equal(pl_central_check(), 0);
}

/* The first flush after a refill ends that run of refills: a burst's
 * run must not count for refills that come after its flushes.  The
 * worker takes class X (1000 B) to its cap by walk-like refills, then
 * runs a burst (refills in a row with no free between: burst refills),
 * flushes once (the run ends), refills once after 64 frees of other
 * blocks (not a burst refill), flushes twice and refills: that refill
 * follows two flushes, but of a run of one refill, not a burst, so the
 * bin stays at its cap, however big the heap.  (Kept until the next
 * burst refill, the burst's run grew it: the previous form of this test,
 * a random walk of 400,000 steps after a burst, found that with each of
 * five seeds, first at steps 21,000 to 96,000.) */
static void *run_end_worker(void *arg) {
  struct walk_grow_arg *a = arg;
  static struct xdrive d;
  xdrive_start(&d, a);
  /* Up to the cap, by refills each after 64 frees. */
  for (int r = 0; r < 6 && d.tc->real_limit[d.cx] < a->cap; r++) xdrive_walk_refill(&d);
  a->before = d.tc->real_limit[d.cx];
  /* The burst: three refills with no free between. */
  for (int r = 0; r < 3; r++) xdrive_refill(&d);
  a->burst_refills = d.tc->refills[d.cx];
  xdrive_flush(&d); /* which ends the run */
  xdrive_walk_refill(&d);
  xdrive_flush(&d);
  xdrive_flush(&d);
  a->flushes = d.tc->overflowed[d.cx];
  xdrive_refill(&d); /* the deciding one */
  xdrive_end(&d);
  return NULL;
}

static void test_burst_run_ends_at_flush(void **state) {
  (void)state;
  static struct walk_grow_arg a;
  walk_grow_case(&a, run_end_worker);
  /* The setup: the burst made a run, and the deciding refill follows two flushes. */
  if (a.burst_refills < 2 || a.flushes != 2)
    fail_msg("the burst made %u burst refills; %u flushes before the deciding refill",
             a.burst_refills, a.flushes);
  if (a.after != a.cap)
    fail_msg("a burst's run, ended by a flush, still grew the bin to %u (cap %u)", a.after, a.cap);
  assert_int_equal(pl_central_check(), 0);
}

/* A bin this thread only frees into (a consumer's): once it has
 * overflowed twice with no refill between, each overflow flushes all of
 * it, and its limit grows to half the cap at most. */
static void test_overflow_only_bin(void **state) {
  (void)state;
  const size_t n = 400;
  unsigned cls = pl_size_class(n);
  uint32_t cap = pl_tcache_cap[cls], half = (cap + 1) / 2;
  assert_int_equal(pl_bin_count(pl_tc, cls), 0); /* untouched so far */
  assert_true(pl_bin_limit(pl_tc, cls) < half);
  size_t total = 8 * (size_t)cap;
  void **b = calloc(total, sizeof *b);
  assert_non_null(b);
  /* Blocks as another thread would have handed them over: straight from
   * the central lists, not through this thread's bin. */
  size_t got = 0;
  while (got < total) {
    size_t k = pl_central_alloc_batch(cls, b + got, total - got);
    assert_true(k > 0);
    for (size_t i = got; i < got + k; i++) *(void **)b[i] = NULL; /* as malloc leaves them */
    got += k;
  }
  size_t flushes = 0, full_flushes = 0;
  uint32_t max_limit = 0;
  for (size_t i = 0; i < total; i++) {
    uint32_t before = pl_bin_count(pl_tc, cls);
    pallet_free(b[i]);
    uint32_t after = pl_bin_count(pl_tc, cls);
    if (after <= before) {
      flushes++;
      if (flushes >= 3) {
        if (after != 1) fail_msg("flush %zu left %u blocks (expected only the one freed)", flushes, after);
        full_flushes++;
      }
    }
    if (pl_bin_limit(pl_tc, cls) > max_limit) max_limit = pl_bin_limit(pl_tc, cls);
    assert_true(after <= pl_bin_limit(pl_tc, cls));
  }
  assert_true(full_flushes > 0);
  assert_int_equal(max_limit, half);
  bins_ok();
  assert_int_equal(pl_central_check(), 0);
  free(b);
}

/* After refills the blocks held by the cache stay within the budget. */
/* Runs 16 refills of class `trigger` (32-byte blocks), keeping the
 * blocks in keep[]; returns the new count of kept blocks. */
static size_t run_refills(pl_tcache_t *tc, unsigned trigger, void **keep, size_t nkeep,
                          size_t maxb) {
  for (int r = 0; r < 16; r++) {
    while (pl_bin_count(tc, trigger) > 0) {
      assert_true(nkeep < maxb);
      keep[nkeep++] = pallet_malloc(32);
    }
    assert_true(nkeep < maxb);
    keep[nkeep++] = pallet_malloc(32); /* refill */
  }
  return nkeep;
}

/* Fills the bins of many classes by freeing a cap's worth of blocks of
 * each; after each class, runs another class's bin dry so that it
 * refills, and checks the total against the budget (pl_tcache_budget()
 * at the time).  The most the cache held. */
static size_t fill_within_budget(void) {
  pl_tcache_t *tc = pl_tc;
  enum { MAXB = 1 << 19 }; /* the 32-byte bin grows in bursts as it is run dry */
  void **keep = calloc(MAXB, sizeof *keep);
  assert_non_null(keep);
  size_t nkeep = 0;
  size_t worst = 0;
  unsigned trigger = pl_size_class(32);
  for (size_t sz = 1024; sz <= (64 << 10); sz += sz / 4) {
    unsigned cls = pl_size_class(sz);
    size_t k = pl_tcache_cap[cls];
    void *blk[256];
    for (size_t round = 0; round < 3; round++) {
      for (size_t i = 0; i < k; i++) {
        blk[i] = pallet_malloc(sz);
        assert_non_null(blk[i]);
      }
      for (size_t i = 0; i < k; i++) pallet_free(blk[i]);
    }
    /* The budget holds within 16 slow-path events (BUDGET_RECOUNT in
     * tcache.c). */
    nkeep = run_refills(tc, trigger, keep, nkeep, MAXB);
    size_t bytes = cached_bytes(tc);
    if (bytes > worst) worst = bytes;
    if (bytes > pl_tcache_budget())
      fail_msg("after filling classes up to %zu B and a refill, the cache holds "
               "%zu bytes; the budget is %zu",
               sz, bytes, pl_tcache_budget());
    bins_ok();
  }
  for (size_t i = 0; i < nkeep; i++) pallet_free(keep[i]);
  free(keep);
  return worst;
}

static void test_budget(void **state) {
  (void)state;
  assert_int_equal(pl_tcache_budget(), pl_tcache_max_bytes);
  assert_true(fill_within_budget() > 0);
}

/* Threads share PALLET_TCACHE_TOTAL: with four caches and a total of
 * 2 MiB, each may hold 512 KiB (the floor), half its own budget here;
 * without the total, the same fill goes past that.  Three helper threads
 * hold caches meanwhile; the teardown lets them go, even after a failure. */
static struct holders {
  sem_t ready, go;
  pthread_t t[3];
  int started;
  size_t total0;
} holders;

static void *hold_a_cache(void *arg) {
  (void)arg;
  pallet_free(pallet_malloc(64));
  sem_post(&holders.ready);
  sem_wait(&holders.go);
  return NULL;
}

static int release_holders(void **state) {
  (void)state;
  for (int i = 0; i < holders.started; i++) sem_post(&holders.go);
  for (int i = 0; i < holders.started; i++) pthread_join(holders.t[i], NULL);
  holders.started = 0;
  pl_tcache_total_bytes = holders.total0;
  return 0;
}

static void test_total_budget(void **state) {
  (void)state;
  size_t live0 = pl_tcache_live();
  holders.total0 = pl_tcache_total_bytes;
  sem_init(&holders.ready, 0, 0);
  sem_init(&holders.go, 0, 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pthread_create(&holders.t[i], NULL, hold_a_cache, NULL), 0);
    holders.started++;
    sem_wait(&holders.ready);
  }
  assert_int_equal(pl_tcache_live(), live0 + 3);
  assert_true(PL_TCACHE_MIN_BUDGET < pl_tcache_max_bytes);
  pl_tcache_total_bytes = 3 * PL_TCACHE_MIN_BUDGET * pl_tcache_live() / 2;
  assert_int_equal(pl_tcache_budget(), 3 * PL_TCACHE_MIN_BUDGET / 2);
  pl_tcache_total_bytes = PL_TCACHE_MIN_BUDGET * pl_tcache_live() / 2; /* below the floor */
  assert_int_equal(pl_tcache_budget(), PL_TCACHE_MIN_BUDGET);
  pl_tcache_flush_all(pl_tc);
  size_t bounded = fill_within_budget();
  assert_true(bounded <= PL_TCACHE_MIN_BUDGET);
  pl_tcache_total_bytes = 0;
  assert_int_equal(pl_tcache_budget(), pl_tcache_max_bytes);
  pl_tcache_flush_all(pl_tc);
  size_t unbounded = fill_within_budget();
  if (unbounded <= PL_TCACHE_MIN_BUDGET)
    fail_msg("without the total the fill held %zu bytes at most: it cannot tell", unbounded);
}

/* The same, when every bin was filled by frees alone (no slow path in
 * between): at its limit, with the refill count of its last slow path
 * long gone. */
static void test_budget_fast_fill(void **state) {
  (void)state;
  pl_tcache_t *tc = pl_tc;
  pl_tcache_flush_all(tc);
  enum { MAXB = 8192 };
  void **keep = calloc(MAXB, sizeof *keep);
  assert_non_null(keep);
  size_t nkeep = 0, filled = 0;
  for (size_t sz = 1024; sz <= (64 << 10); sz += sz / 4) {
    unsigned cls = pl_size_class(sz);
    size_t cap = pl_tcache_cap[cls], first = nkeep;
    /* Grow the limit to the cap, hold a cap's worth of blocks, and run
     * the bin dry (the last mallocs are fast pops). */
    while (pl_bin_limit(tc, cls) < cap || nkeep - first < cap || pl_bin_count(tc, cls) > 0) {
      assert_true(nkeep < MAXB);
      keep[nkeep] = pallet_malloc(sz);
      assert_non_null(keep[nkeep++]);
    }
    /* Free exactly a limit's worth: fast pushes, no flush. */
    assert_true(nkeep - first >= cap);
    for (size_t i = 0; i < cap; i++) {
      pallet_free(keep[--nkeep]);
    }
    assert_int_equal(pl_bin_count(tc, cls), cap);
    filled += cap * pl_class_size(cls);
  }
  unsigned trigger = pl_size_class(32);
  while (pl_bin_count(tc, trigger) > 0) {
    assert_true(nkeep < MAXB);
    keep[nkeep++] = pallet_malloc(32);
  }
  /* The budget is checked on slow paths and holds within 16 of them
   * (tcache.c, BUDGET_RECOUNT). */
  nkeep = run_refills(tc, trigger, keep, nkeep, MAXB);
  size_t bytes = cached_bytes(tc);
  /* The fill alone was above the budget, so the refill had to trim. */
  assert_true(filled > pl_tcache_max_bytes);
  if (bytes > pl_tcache_max_bytes)
    fail_msg("after a refill the cache holds %zu bytes; the budget is %zu",
             bytes, pl_tcache_max_bytes);
  bins_ok();
  for (size_t i = 0; i < nkeep; i++) pallet_free(keep[i]);
  free(keep);
}

static void test_holds_and_key(void **state) {
  (void)state;
  pl_tcache_t *tc = pl_tc;
  unsigned cls = pl_size_class(24);
  void *p = pallet_malloc(24), *q = pallet_malloc(24);
  assert_non_null(p);
  assert_non_null(q);
  /* The free key is the fast paths' work: a --disable-hardening build
   * neither writes nor clears it there. */
  if (pl_config_hardening) assert_int_equal(*(uintptr_t *)p, 0);
  assert_false(pl_tcache_holds(tc, cls, p));
  pallet_free(p);
  assert_true(pl_tcache_holds(tc, cls, p));
  assert_false(pl_tcache_holds(tc, cls, q));
  assert_false(pl_tcache_holds(tc, cls + 1, p));
  assert_false(pl_tcache_holds(&pl_tcache_dead, cls, p));
  assert_false(pl_tcache_holds(&pl_tcache_boot, cls, p));
  if (pl_config_hardening) assert_true(*(uintptr_t *)p == pl_free_key(p));
  void *r = pallet_malloc(24); /* the last pushed comes back first */
  assert_ptr_equal(r, p);
  assert_false(pl_tcache_holds(tc, cls, p));
  if (pl_config_hardening) assert_int_equal(*(uintptr_t *)r, 0);
  pallet_free(r);
  pallet_free(q);
  assert_true(pl_tcache_holds(tc, cls, q));
}

static bool block_free_in_central(void *p) {
  pl_span_t *s = pl_span_of(p);
  if (s == NULL) return false;
  /* A flushed block may be parked in the class's transfer array: put
   * those back into the bitmaps first. */
  if (s->state == PL_SPAN_SMALL) pl_central_drain(s->cls);
  /* Its span may have gone back to the heap (whose page map names the
   * span of a free span's inner pages no longer). */
  pl_span_t found;
  if (!pl_span_find(p, &found)) return false;
  if (found.state == PL_SPAN_FREE) return true;
  s = pl_span_of(p);
  if (s->state != PL_SPAN_SMALL) return false;
  size_t idx = ((uintptr_t)p - s->start) / pl_class_size(s->cls);
  return (s->free_map[idx / 64] >> (idx % 64)) & 1;
}

static size_t in_use(unsigned cls) {
  pl_central_totals_t t;
  pl_central_totals(cls, &t);
  return t.blocks - t.free_blocks;
}

/* A large free parks the span in the thread's cache (large.h): still
 * LARGE, flagged, counted as cached and not as allocated; the next large
 * free gives it back and parks the new one; the next large malloc gives
 * the parked one back (under the lock it takes); so does a thread's exit. */
static void *park_and_exit(void *arg) {
  void *p = pallet_malloc(600 << 10);
  pallet_free(p);
  *(pl_span_t **)arg = pl_tc->large_pending;
  return NULL;
}

static void test_large_parked(void **state) {
  (void)state;
  pl_thread_start();
  pl_tcache_t *tc = pl_tc;
  pl_large_flush_pending(&tc->large_pending);
  pallet_stats_t st0, st1;
  assert_int_equal(pallet_stats_get(&st0), 0);
  void *a = pallet_malloc(500 << 10), *b = pallet_malloc(700 << 10);
  assert_non_null(a);
  assert_non_null(b);
  pl_span_t *sa = pl_span_of(a), *sb = pl_span_of(b);
  pallet_free(a);
  assert_ptr_equal(tc->large_pending, sa);
  assert_int_equal(sa->state, PL_SPAN_LARGE);
  assert_true(sa->flags & PL_SPAN_PENDING);
  assert_int_equal(pallet_stats_get(&st1), 0);
  assert_int_equal(st1.large, st0.large + sb->large_size);
  assert_int_equal(st1.tcache, st0.tcache + sa->large_size);
  pallet_free(b);
  assert_ptr_equal(tc->large_pending, sb);
  pl_span_t found;
  assert_true(pl_span_find(a, &found));
  assert_int_equal(found.state, PL_SPAN_FREE);
  void *c = pallet_malloc((size_t)1600 << 10);
  assert_non_null(c);
  assert_null(tc->large_pending);
  /* b went back to the heap: its pages are free, or c (which may have
   * been carved from b merged with its free neighbours) covers them. */
  assert_true(pl_span_find(b, &found));
  assert_true(found.state == PL_SPAN_FREE ||
              ((uintptr_t)b >= (uintptr_t)c && (uintptr_t)b < (uintptr_t)c + ((size_t)1600 << 10)));
  pallet_free(c);
  assert_int_equal(pl_span_heap_check(), 0);
  pl_span_t *parked = NULL;
  run_in_thread(park_and_exit, &parked);
  assert_non_null(parked);
  assert_int_not_equal(parked->state, PL_SPAN_LARGE);
  assert_int_equal(pl_span_heap_check(), 0);
  /* A decay pass takes the parked block of a thread idle for its age (this
   * one, made to look idle), and only then. */
  void *d = pallet_malloc(900 << 10);
  pallet_free(d);
  assert_non_null(tc->large_pending);
  uint64_t now = pl_os_now_ms();
  pl_tcache_poke_idle(now, now + 1); /* nobody is that idle */
  assert_non_null(tc->large_pending);
  __atomic_store_n(&tc->last_slow_ms, 0, __ATOMIC_RELAXED);
  pl_tcache_poke_idle(now + 10, 10);
  assert_null(tc->large_pending);
  assert_true(pl_span_find(d, &found));
  assert_int_equal(found.state, PL_SPAN_FREE);
  pl_tcache_unpoke(tc);
  assert_int_equal(pl_span_heap_check(), 0);
}

/* A new thread's bins start in starter arrays that lie side by side: a
 * few blocks of each of the 16 classes of 16-256 B keep their slots
 * within 4 KiB.  A bin whose limit grows past the starter array (here
 * while full, on a flush) moves its blocks to its full array and loses
 * none. */
struct starter_result {
  size_t spread;      /* bytes from the lowest starter base to the end of the highest */
  bool moved;         /* the 64-byte bin left the starter region */
  bool distinct;      /* and holds no block twice */
  size_t lost;        /* blocks of that class neither live nor free */
  struct bins_check bins;
};

static void *starter_worker(void *arg) {
  struct starter_result *r = arg;
  void *b[256];
  for (size_t n = 16; n <= 256; n += 16) {
    for (int i = 0; i < 3; i++) b[i] = pallet_malloc(n);
    for (int i = 0; i < 3; i++) pallet_free(b[i]);
  }
  const pl_tcache_t *tc = pl_tc;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (size_t n = 16; n <= 256; n += 16) {
    void **a = tc->arr[pl_size_class(n)];
    if ((uintptr_t)a < lo) lo = (uintptr_t)a;
    if ((uintptr_t)(a + room_now(tc, pl_size_class(n))) > hi)
      hi = (uintptr_t)(a + room_now(tc, pl_size_class(n)));
  }
  r->spread = hi - lo;
  unsigned cls = pl_size_class(64);
  size_t live0 = in_use(cls) - pl_tcache_count_class(cls);
  for (int i = 0; i < 256; i++) b[i] = pallet_malloc(64);
  for (int i = 0; i < 256; i++) pallet_free(b[i]);
  r->moved = tc->arr[cls] < tc->slot_storage + full_total() && !in_burst(tc, cls);
  r->distinct = true;
  for (uint32_t i = 0; i < pl_bin_count(tc, cls); i++)
    for (uint32_t k = 0; k < i; k++)
      if (tc->arr[cls][i] == tc->arr[cls][k]) r->distinct = false;
  r->lost = in_use(cls) - pl_tcache_count_class(cls) - live0;
  bins_check(&r->bins, tc);
  return NULL;
}

static void test_starter_arrays(void **state) {
  (void)state;
  struct starter_result r = {0};
  run_in_thread(starter_worker, &r);
  bins_check_ok(&r.bins);
  if (r.spread > 4096)
    fail_msg("the bins of 16 classes spread over %zu bytes of slots", r.spread);
  assert_true(r.moved);
  assert_true(r.distinct);
  assert_int_equal(r.lost, 0);
}

/* Must run last: it leaves this thread without a cache. */
static void test_destroy(void **state) {
  (void)state;
  pl_tcache_t *tc = pl_tc;
  assert_int_equal(tc->state, PL_TC_ACTIVE);
  /* Put blocks of a few classes in the cache. */
  static const size_t sizes[] = {16, 100, 1000, 5000, 40000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *b[4];
    for (size_t k = 0; k < 4; k++) b[k] = pallet_malloc(sizes[i]);
    for (size_t k = 0; k < 4; k++) pallet_free(b[k]);
  }
  size_t held = 0, before[PL_NCLASSES + 1];
  void **copy = calloc(4096, sizeof *copy);
  assert_non_null(copy);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    before[c] = in_use(c);
    assert_int_equal(pl_tcache_count_class(c), pl_bin_count(tc, c));
    for (uint32_t i = 0; i < pl_bin_count(tc, c); i++) {
      assert_true(held < 4096);
      copy[held++] = tc->arr[c][i];
    }
  }
  assert_true(held >= 5);
  size_t counts[PL_NCLASSES + 1];
  for (unsigned c = 1; c <= PL_NCLASSES; c++) counts[c] = pl_bin_count(tc, c);
  size_t live0 = pl_tcache_live();

  pl_tcache_destroy(tc);
  assert_ptr_equal(pl_tc, &pl_tcache_dead);
  assert_int_equal(tc->state, PL_TC_DEAD);
  assert_int_equal(pl_tcache_live(), live0 - 1);
  /* The thread's bins are closed again: the fast paths send everything
   * to the slow paths. */
  for (unsigned c = 0; c <= PL_NCLASSES; c++)
    if (pl_tls.bins[c].top || pl_tls.bins[c].end || pl_tls.bins[c].floor)
      fail_msg("bin %u still open after tear-down", c);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    assert_int_equal(pl_tcache_count_class(c), 0);
    if (in_use(c) != before[c] - counts[c])
      fail_msg("class %u: %zu blocks in use after the flush, want %zu - %zu", c,
               in_use(c), before[c], counts[c]);
  }
  for (size_t i = 0; i < held; i++)
    if (!block_free_in_central(copy[i])) fail_msg("block %p not given back", copy[i]);
  assert_int_equal(pl_central_check(), 0);
  free(copy);

  /* The thread still allocates, from the central lists. */
  pl_thread_start();
  assert_ptr_equal(pl_tc, &pl_tcache_dead);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned c = pl_size_class(sizes[i]);
    size_t u = in_use(c);
    void *p = pallet_malloc(sizes[i]);
    assert_non_null(p);
    assert_false(block_free_in_central(p));
    assert_int_equal(in_use(c), u + 1);
    memset(p, 0x5a, sizes[i]);
    pallet_free(p);
    assert_true(block_free_in_central(p));
    assert_int_equal(in_use(c), u);
  }
  void *big = pallet_malloc(1 << 20);
  assert_non_null(big);
  pallet_free(big);
  assert_ptr_equal(pl_tc, &pl_tcache_dead);
  assert_int_equal(pl_central_check(), 0);
}

/* A worker held at a gate: starts fn(arg) on *t and returns once it has
 * posted *ready; it then waits for *go (the caller posts it). */
static void start_held(pthread_t *t, void *(*fn)(void *), void *arg, sem_t *ready, sem_t *go) {
  sem_init(ready, 0, 0);
  sem_init(go, 0, 0);
  assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
  sem_wait(ready);
}

/* fork() while another thread holds a cache: in the child only the
 * forking thread's cache is registered (the other's bins are in TLS that
 * glibc gives to the child's next thread), and a thread the child makes
 * gets a cache of its own, whose bins are its own. */
struct fork_arg {
  sem_t ready, go;
  const pl_bin_t *bins;
};
static const pl_tcache_t *main_tc; /* the forking thread's, in the child */

/* Makes the calling thread's cache hold blocks of 48 B; its bins. */
static const pl_bin_t *cache_some_blocks(void) {
  void *b[32];
  for (int i = 0; i < 32; i++) b[i] = pallet_malloc(48);
  for (int i = 0; i < 32; i++) pallet_free(b[i]);
  return pl_tc->bins;
}

static void *cache_holder(void *argp) {
  struct fork_arg *a = argp;
  a->bins = cache_some_blocks();
  sem_post(&a->ready);
  sem_wait(&a->go);
  return NULL;
}

static void *child_thread(void *argp) {
  struct fork_arg *a = argp;
  a->bins = cache_some_blocks();
  TU_CHILD_REQUIRE(pl_tcache_live() == 2);
  TU_CHILD_REQUIRE(pl_tcache_count_class(pl_size_class(48)) ==
                   pl_bin_count(pl_tc, pl_size_class(48)) +
                       pl_bin_count(main_tc, pl_size_class(48)));
  return NULL;
}

static void child_after_fork(void *arg) {
  (void)arg;
  TU_CHILD_REQUIRE(pl_tc->state == PL_TC_ACTIVE);
  TU_CHILD_REQUIRE(pl_tcache_live() == 1);
  TU_CHILD_REQUIRE(pl_tcache_count_class(pl_size_class(48)) ==
                   pl_bin_count(pl_tc, pl_size_class(48)));
  struct fork_arg c = {.bins = NULL};
  main_tc = pl_tc;
  pthread_t t;
  TU_CHILD_REQUIRE(pthread_create(&t, NULL, child_thread, &c) == 0);
  pthread_join(t, NULL);
  TU_CHILD_REQUIRE(c.bins != NULL && c.bins != pl_tc->bins);
  TU_CHILD_REQUIRE(pl_tcache_live() == 1);
  TU_CHILD_REQUIRE(pl_central_check() == 0);
}

static void test_fork_drops_other_caches(void **state) {
  (void)state;
  pl_thread_start();
  struct fork_arg a;
  pthread_t t;
  start_held(&t, cache_holder, &a, &a.ready, &a.go);
  assert_int_equal(pl_tcache_live(), 2);
  struct tu_child_result res;
  char how[128];
  tu_run_child(child_after_fork, NULL, 20, &res);
  sem_post(&a.go);
  pthread_join(t, NULL);
  tu_describe_status(res.status, how, sizeof how);
  if (!(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0))
    fail_msg("child after fork: %s:\n%s", how, res.err);
}


/* An idle thread's cache: a decay pass pokes it (its limits drop to 0),
 * and the next time the thread frees it gives the whole cache back. */
struct idle_arg {
  sem_t ready, go;
  pl_tcache_t *tc;
  uint32_t before, after, limit_seen;
  int poked_after;
};

static void *idle_worker(void *argp) {
  struct idle_arg *a = argp;
  unsigned cls = pl_size_class(64);
  void *b[48];
  for (int i = 0; i < 48; i++) b[i] = pallet_malloc(64);
  for (int i = 0; i < 48; i++) pallet_free(b[i]);
  a->tc = pl_tc;
  a->before = pl_bin_count(pl_tc, cls);
  sem_post(&a->ready);
  sem_wait(&a->go);
  a->limit_seen = pl_bin_limit(pl_tc, cls);
  void *p = pallet_malloc(64); /* a pop: the fast path, unaffected */
  pallet_free(p);              /* the poked gate: the cache goes back */
  a->after = pl_bin_count(pl_tc, cls);
  a->poked_after = (int)__atomic_load_n(&pl_tc->poked, __ATOMIC_RELAXED);
  return NULL;
}

static void test_idle_cache_given_back(void **state) {
  (void)state;
  struct idle_arg a;
  pthread_t t;
  memset(&a, 0, sizeof a);
  start_held(&t, idle_worker, &a, &a.ready, &a.go);
  assert_true(a.before >= 16);
  /* A pass at a time when the worker has not reached the heap for the
   * decay time: pretend it is an hour later. */
  pl_tcache_poke_idle(pl_os_now_ms() + 3600 * 1000, 1000);
  assert_int_equal(__atomic_load_n(&a.tc->poked, __ATOMIC_RELAXED), 1);
  sem_post(&a.go);
  pthread_join(t, NULL);
  assert_int_equal(a.limit_seen, 0);
  assert_int_equal(a.poked_after, 0);
  if (a.after > 1) fail_msg("the poked cache still holds %u blocks (had %u)", a.after, a.before);
  /* This thread may have been poked too: its next free gives back. */
  void *p = pallet_malloc(64);
  pallet_free(p);
  assert_int_equal(__atomic_load_n(&pl_tc->poked, __ATOMIC_RELAXED), 0);
  assert_int_equal(pl_central_check(), 0);
}

/* A thread whose calls all stay on the fast paths (light work after a
 * burst): every PL_FREE_TICK fast frees it looks at the clock, and if it
 * has not reached the heap for the decay time it gives its whole cache
 * back; if it has, it keeps it. */
struct quiet_arg {
  uint32_t held, after_recent, after_quiet, others_after;
};

static void *quiet_worker(void *argp) {
  struct quiet_arg *a = argp;
  unsigned cls = pl_size_class(64);
  void *b[48];
  for (int i = 0; i < 48; i++) b[i] = pallet_malloc(64);
  for (int i = 0; i < 48; i++) pallet_free(b[i]);
  pallet_free(pallet_malloc(300)); /* another class holds a block too */
  a->held = pl_bin_count(pl_tc, cls);
  /* The heap was reached just now: a tick keeps the cache. */
  pl_tls.free_tick = 1;
  pallet_free(pallet_malloc(64));
  a->after_recent = pl_bin_count(pl_tc, cls);
  /* As if the last refill or flush were two decay times ago. */
  __atomic_store_n(&pl_tc->last_slow_ms, pl_os_now_ms() - 2 * pl_opt.decay_ms - 1, __ATOMIC_RELAXED);
  pl_tls.free_tick = 1;
  pallet_free(pallet_malloc(64)); /* pop, push: both fast; then the tick */
  a->after_quiet = pl_bin_count(pl_tc, cls);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) a->others_after += pl_bin_count(pl_tc, c);
  return NULL;
}

/* Another thread counts as busy in the heap for PL_BUSY_MS after it last
 * reached it, the caller itself never does, and neither does a thread
 * that has exited. */
struct busy_arg {
  sem_t ready, go;
  pl_tcache_t *tc;
};

static void *busy_worker(void *argp) {
  struct busy_arg *a = argp;
  pallet_free(pallet_malloc(64));        /* the thread's cache */
  pallet_free(pallet_malloc(300 << 10)); /* a large block: the heap */
  a->tc = pl_tc;
  sem_post(&a->ready);
  sem_wait(&a->go);
  return NULL;
}

static void test_others_busy(void **state) {
  (void)state;
  struct busy_arg a;
  pthread_t t;
  memset(&a, 0, sizeof a);
  pallet_free(pallet_malloc(300 << 10)); /* this thread reaches the heap */
  assert_false(pl_tcache_others_busy(pl_os_now_ms()));
  start_held(&t, busy_worker, &a, &a.ready, &a.go);
  uint64_t seen = __atomic_load_n(&a.tc->last_slow_ms, __ATOMIC_RELAXED);
  assert_true(pl_tcache_others_busy(seen));
  assert_true(pl_tcache_others_busy(seen + PL_BUSY_MS - 1));
  assert_false(pl_tcache_others_busy(seen + PL_BUSY_MS));
  sem_post(&a.go);
  pthread_join(t, NULL);
  assert_false(pl_tcache_others_busy(seen));
}

/* A thread that exits purges the heap's excess free memory only when no
 * other thread is busy in the heap: while one is, its calls will run the
 * decay passes.  The threads' clocks are set so that "busy" does not
 * depend on scheduling. */
struct burst_arg {
  size_t bytes;
};

static void *burst_worker(void *argp) {
  struct burst_arg *a = argp;
  enum { N = 4096 };
  static void *blocks[N];
  size_t size = a->bytes / N;
  for (int i = 0; i < N; i++) {
    blocks[i] = pallet_malloc(size);
    assert_non_null(blocks[i]);
    memset(blocks[i], 1, size);
  }
  for (int i = 0; i < N; i++) pallet_free(blocks[i]);
  return NULL;
}

static void test_exit_purge_waits_for_busy(void **state) {
  (void)state;
  struct busy_arg busy;
  struct burst_arg burst = {(size_t)64 << 20}; /* 16 KiB blocks */
  pthread_t tb, tw;
  memset(&busy, 0, sizeof busy);
  pl_span_purge(0, false, 0);
  uint64_t saved_self = pl_tc->last_slow_ms;
  __atomic_store_n(&pl_tc->last_slow_ms, 0, __ATOMIC_RELAXED); /* this thread: idle */
  start_held(&tb, busy_worker, &busy, &busy.ready, &busy.go);
  /* Busy for the next hour, whatever the scheduler does. */
  __atomic_store_n(&busy.tc->last_slow_ms, pl_os_now_ms() + 3600 * 1000, __ATOMIC_RELAXED);
  assert_int_equal(pthread_create(&tw, NULL, burst_worker, &burst), 0);
  pthread_join(tw, NULL);
  size_t while_busy = pl_span_dirty_bytes();
  /* Idle now; its exit is the last. */
  __atomic_store_n(&busy.tc->last_slow_ms, 0, __ATOMIC_RELAXED);
  sem_post(&busy.go);
  pthread_join(tb, NULL);
  size_t after = pl_span_dirty_bytes();
  size_t half = pl_span_dirty_min / 2;
  __atomic_store_n(&pl_tc->last_slow_ms, saved_self, __ATOMIC_RELAXED);
  if (while_busy < burst.bytes / 2)
    fail_msg("a thread exited while another was busy, and only %zu of %zu bytes stay dirty",
             while_busy, burst.bytes);
  if (after > half)
    fail_msg("the last busy thread exited and %zu bytes stay dirty (half the limit: %zu)", after,
             half);
  assert_int_equal(pl_central_check(), 0);
}

static void test_quiet_thread_gives_back(void **state) {
  (void)state;
  struct quiet_arg a;
  memset(&a, 0, sizeof a);
  run_in_thread(quiet_worker, &a);
  assert_true(a.held >= 16);
  assert_int_equal(a.after_recent, a.held);
  if (a.after_quiet != 0 || a.others_after != 0)
    fail_msg("after a tick in a quiet thread the cache holds %u blocks of the class (had %u), "
             "%u in all", a.after_quiet, a.held, a.others_after);
  assert_int_equal(pl_central_check(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_budget),
      cmocka_unit_test(test_rounds_past_burst_cap),
      /* Before any large free here: that gives the thread its cache. */
      cmocka_unit_test(test_active),
      cmocka_unit_test(test_quiet_thread_gives_back),
      cmocka_unit_test(test_others_busy),
      cmocka_unit_test(test_exit_purge_waits_for_busy),
      cmocka_unit_test(test_bin_lookup),
      cmocka_unit_test(test_limit_flush),
      cmocka_unit_test(test_limit_growth),
      cmocka_unit_test(test_overflow_only_bin),
      cmocka_unit_test(test_burst_growth),
      cmocka_unit_test(test_burst_growth_with_temporaries),
      cmocka_unit_test(test_burst_keeps_growing),
      cmocka_unit_test(test_big_class_growth),
      cmocka_unit_test(test_rounds_at_cap),
      cmocka_unit_test(test_trim),
      cmocka_unit_test(test_walk_growth_share),
      cmocka_unit_test(test_burst_run_ends_at_flush),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_budget_fast_fill),
      cmocka_unit_test_teardown(test_total_budget, release_holders),
      cmocka_unit_test(test_holds_and_key),
      cmocka_unit_test(test_idle_cache_given_back),
      cmocka_unit_test(test_large_parked),
      cmocka_unit_test(test_fork_drops_other_caches),
      cmocka_unit_test(test_starter_arrays),
      cmocka_unit_test(test_destroy),
  };
  return cmocka_run_group_tests_name("unit_tcache", tests, setup, NULL);
}
