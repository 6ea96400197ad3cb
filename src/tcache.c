/*
 * tcache.c — thread cache slow paths, creation, tear-down and registry.
 * The fast paths are inline in api.c (they need the api's entry shape).
 */
#include "tcache.h"

#include <stddef.h>

#include <string.h>

#include "central.h"
#include "large.h"
#include "lock.h"
#include "meta.h"
#include "options.h"
#include "os.h"

__thread pl_tls_t pl_tls __attribute__((tls_model(PL_TLS_MODEL))) = {
    .tc = &pl_tcache_boot, .free_tick = PL_FREE_TICK};

pl_tcache_t pl_tcache_boot; /* all three: state PL_TC_STATIC, bins empty */
pl_tcache_t pl_tcache_init;
pl_tcache_t pl_tcache_dead;

size_t pl_tcache_max_bytes = PL_TCACHE_MAX_DEFAULT;
size_t pl_tcache_total_bytes = PL_TCACHE_TOTAL_DEFAULT;
uint32_t pl_tcache_cap[PL_NCLASSES + 1];
uint32_t pl_tcache_burst_cap[PL_NCLASSES + 1];
uint32_t pl_tcache_round_cap[PL_NCLASSES + 1];
static size_t total_slots;
/* Where a bin's slots start in a cache's slot storage: its starter
 * array and its full array (the same array for a class whose cap is at
 * most PL_TCACHE_STARTER_SLOTS). */
static uint32_t starter_off[PL_NCLASSES + 1], full_off[PL_NCLASSES + 1];

static pl_lock_t registry_lock = PL_LOCK_INIT;
static pl_tcache_t *registry;   /* active caches */
static pl_tcache_t *pool;       /* recycled caches */
static size_t nactive;

/* A bin holds at most CAP_BYTES of blocks (CAP_MAX blocks), but at least
 * CAP_MIN blocks as long as that stays within CAP_MIN_BYTES. */
#define CAP_BYTES ((size_t)16 << 10)
#define CAP_MIN 8
#define CAP_MIN_BYTES ((size_t)256 << 10)
#define CAP_MAX 256
#define START_LIMIT 4
/* A class used in bursts: BURST_RUNS flushes in a row, after BURST_RUNS
 * burst refills (see burst_refill) in a row, then a refill.  Its bin's
 * limit doubles at each such refill, up to BURST_SMALL_BYTES of blocks
 * for classes whose cap is at least BURST_MIN_CAP blocks (up to 256
 * bytes); at most BURST_MAX blocks and half the thread's budget.  For
 * bigger blocks a cap is a few dozen, and two flushes then two refills
 * are common in a steady mix: letting
 * them grow to 512 KiB on that signal cost bench-larson, bench-servermix
 * and bench-realloc about a quarter more peak RSS.  So they grow on it up
 * to BURST_BYTES only, and on to BURST_LONG_BYTES only after runs of
 * BURST_LONG_RUNS, which a burst of a few dozen blocks of a class makes
 * and a steady mix seldom does (bench-bursts 1000:4096, 1 B - 4 KiB
 * blocks by the thousand: 0.56-0.80x the time, +12 % peak RSS; the
 * server mixes, larson and realloc: within noise, +0-4 % peak RSS).
 * BURST_LONG_BYTES was 256 KiB until rounds of 1000 blocks of 1 B-16 KiB
 * (bench-bursts --threads 2 1000:16384, 8 MB a round a thread) showed
 * what it left out: such a round needs about 62 blocks of each class
 * from 9 to 16 KiB (a class is 1 KiB wide there), and a bin of 16 KiB
 * blocks could hold 16, so every round sent three quarters of them
 * through the central lists, and the spans they emptied through the
 * heap (about 35 spans carved and given back a round a thread).  At
 * 1 MiB: 0.67x that run's time (7 interleaved runs; tcmalloc 0.28 s
 * against 0.42 s, from 0.61), the server mixes, larson, realloc,
 * buffers, pipeline and workingset within noise in time and within 4 %
 * in peak RSS, but for bench-servermix: 1.03x and 1.06x in two sets of
 * 15 runs (its bins of 512 B-32 KiB make such runs now and then). */
#define BURST_RUNS 2
/* A bin at its limit that a round of about that many blocks (allocated,
 * then freed) passes through refills near the end of the allocations
 * and flushes near the end of the frees, round after round: the refill
 * brings half a limit, so the frees overflow, and the flush takes the
 * bin below what the next round needs.  Such a flush comes within a
 * limit's worth of the thread's frees after the refill (a walk of a
 * steady mix needs about a limit squared over 8 of this class alone).
 * After CHURN_RUNS such pairs in a row, the bin doubles past its cap,
 * as a bin used in bursts does, and the trim takes it back if it stops
 * being used. */
#define CHURN_RUNS 3
/* Such rounds may take a bin past its burst cap too, up to half the
 * thread's budget of blocks (4 MiB with the default budget; at most
 * BURST_MAX blocks), so that PALLET_TCACHE_MAX sizes the rounds a
 * thread keeps as it sizes the rest of its cache:
 * the burst caps keep the bins of a random mix of big blocks, whose
 * runs of refills and flushes are long now and then, from holding more
 * than they use (bench-buffers), but rounds of 30 blocks of 40 KB (a
 * burst cap of 12) went through the span heap at every round, 26 times
 * tcmalloc's time with two threads.  A flush in a random mix seldom
 * comes so soon after the refill: the other classes' frees come
 * between. */
/* A small class already past its cap goes on growing after one refill
 * and one flush: a round that needs between 1 and 1.5 times the limit
 * refills once and flushes once, so runs of two never come again, and
 * bench-bursts (classes of 16-128 B, about 1400 blocks a round) stalled
 * at 1024 blocks, a third of each batch through the central lists every
 * round.  Growing on: 0.91x and 0.95x its time (9 and 11 interleaved
 * runs), 7 % fewer instructions (callgrind, --quick), 0.97x the peak
 * RSS; servermix with 4 and 8 threads, larson, prodcons, workingset and
 * realloc within noise in time and within 2 % in peak RSS. */
#define BURST_ON_RUNS 1
#define BURST_SMALL_BYTES ((size_t)512 << 10)
#define BURST_BYTES ((size_t)64 << 10)
#define BURST_LONG_RUNS 3
#define BURST_LONG_BYTES ((size_t)1 << 20)
#define BURST_MAX 8192
#define BURST_MIN_CAP 64
/* Classes above BIG_SIZE (36 KiB to 256 KiB) have spans of one block or
 * two, so each block a bin lacks or overflows costs a span carved from
 * the heap or given back to it (about 250 instructions a block), and
 * their caps are 1 to 7 blocks.  Used in bursts (the runs above), they
 * grow up to BIG_BURST_BYTES of blocks (the others stopped at 256 KiB
 * then, where a class of 64 KiB could not grow at all; at 1 MiB, as the
 * others since, 7 interleaved runs took bench-bands large to 0.84x the
 * time but bench-buffers 32768:262144 and 4096:131072 with 8 threads to
 * 1.11x and 1.09x the peak RSS).  With the default budget raised from 4 to 8 MiB in the same
 * change, against 8326d93 (medians of per-pair ratios of 5 interleaved
 * runs): bench-bands large (16 blocks of 32-256 KiB replaced at random)
 * 0.62x the time; bench-bursts 100:65536 (rounds of 100 blocks of
 * 1 B-64 KiB) 0.65x with 1 thread and 0.53x with 4, 0.95x the peak RSS
 * (tcmalloc had been 0.3x pallet's time there); bench-buffers 32768:262144
 * 0.61x, 4096:131072 with 8 threads 0.81x (1.10x the peak RSS); the
 * server mixes, larson, realloc, buffers and bench-bands medium within
 * noise in time and +0-4 % in peak RSS.  With the 4 MiB budget, the
 * bigger burst cap (with single-round growth, below) gave the bursts
 * rows 0.81x and 0.71x; the 8 MiB budget alone, 0.94x with one thread
 * (single runs).  Growing those classes after a single refill and flush
 * (as the small ones past their caps) was tried too: no faster on
 * these, and bench-buffers 4096:131072 with 8 threads took 1.30x the
 * time and 1.58x the peak RSS. */
#define BIG_SIZE PL_BIG_CLASS_MIN
#define BIG_BURST_BYTES ((size_t)512 << 10)

uint16_t pl_bin_lookup[PL_SMALL_LOOKUP_MAX + 1];
uint16_t pl_bin_lookup_mid[PL_SMALL_MAX >> PL_MID_LOOKUP_SHIFT];

void pl_tcache_init_caps(void) {
  size_t total = 0;
  for (size_t n = 0; n <= PL_SMALL_LOOKUP_MAX; n++)
    pl_bin_lookup[n] = (uint16_t)offsetof(pl_tls_t, bins[pl_size_class(n)]);
  for (size_t i = PL_SMALL_LOOKUP_MAX >> PL_MID_LOOKUP_SHIFT; i < (PL_SMALL_MAX >> PL_MID_LOOKUP_SHIFT); i++)
    pl_bin_lookup_mid[i] =
        (uint16_t)offsetof(pl_tls_t, bins[pl_size_class((i + 1) << PL_MID_LOOKUP_SHIFT)]);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    size_t size = pl_class_info[c].size;
    size_t cap = CAP_BYTES / size;
    if (cap > CAP_MAX) cap = CAP_MAX;
    size_t floor = CAP_MIN_BYTES / size < CAP_MIN ? CAP_MIN_BYTES / size : CAP_MIN;
    if (cap < floor) cap = floor;
    /* The per-thread byte budget bounds every single bin too, but every
     * bin holds at least one block (a bin of capacity 0 would have no
     * slots of its own). */
    size_t budget = pl_tcache_max_bytes / 2 / pl_class_info[c].size;
    if (cap > budget) cap = budget;
    if (cap < 1) cap = 1;
    pl_tcache_cap[c] = (uint32_t)cap;
    size_t burst = (cap >= BURST_MIN_CAP ? BURST_SMALL_BYTES
                    : size > BIG_SIZE        ? BIG_BURST_BYTES
                                             : BURST_LONG_BYTES) /
                   size;
    if (burst > BURST_MAX) burst = BURST_MAX;
    if (burst > budget) burst = budget;
    pl_tcache_burst_cap[c] = (uint32_t)(burst > cap ? burst : cap);
    size_t round = budget < BURST_MAX ? budget : BURST_MAX;
    pl_tcache_round_cap[c] = (uint32_t)(round > pl_tcache_burst_cap[c] ? round : pl_tcache_burst_cap[c]);
  }
  /* First an array of cap slots for every class, in class order, then
   * the starter arrays of the classes whose cap is bigger.  (The starter
   * arrays first, 6.4 KiB, moved the full arrays by as much and cost
   * bench-realloc 6-7 % in time, in 15 and 21 interleaved runs, with the
   * same instruction count: which slot addresses share their low bits
   * matters.  Placed after, as here, they leave the full arrays where
   * they were: 1.005x.) */
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    full_off[c] = (uint32_t)total;
    if (pl_tcache_cap[c] <= PL_TCACHE_STARTER_SLOTS) starter_off[c] = (uint32_t)total;
    total += pl_tcache_cap[c];
  }
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    if (pl_tcache_cap[c] <= PL_TCACHE_STARTER_SLOTS) continue;
    starter_off[c] = (uint32_t)total;
    total += PL_TCACHE_STARTER_SLOTS;
  }
  total_slots = total;
}

/* Bin c moves its blocks to the array a (its full array, or its burst
 * array), switched to under the registry lock so that a statistics
 * reader sees arr and top of the same array; closed (as if poked) until
 * the caller's set_limit. */
static PL_NOINLINE void move_bin(pl_tcache_t *tc, unsigned c, void **a) {
  pl_bin_t *b = &tc->bins[c];
  uint32_t n = pl_bin_count(tc, c);
  memcpy(a, tc->arr[c], n * sizeof(void *));
  pl_lock(&registry_lock);
  tc->arr[c] = a;
  __atomic_store_n(&b->floor, a, __ATOMIC_RELAXED);
  __atomic_store_n(&b->top, a + n, __ATOMIC_RELAXED);
  __atomic_store_n(&b->end, a, __ATOMIC_RELAXED);
  pl_unlock(&registry_lock);
}

/* The owner changes a bin's limit; while a poke is in force the fast-path
 * gate stays at 0 until the owner lifts it.  A limit past the starter
 * array moves the bin to its full array first. */
static void set_limit(pl_tcache_t *tc, unsigned c, uint32_t nl) {
  if (nl > PL_TCACHE_STARTER_SLOTS && tc->arr[c] == tc->slot_storage + starter_off[c])
    move_bin(tc, c, tc->slot_storage + full_off[c]);
  tc->limit_bytes = tc->limit_bytes - (size_t)tc->real_limit[c] * pl_class_info[c].size +
                    (size_t)nl * pl_class_info[c].size;
  tc->real_limit[c] = nl;
  pl_bin_open(tc, c);
}

void pl_tcache_poke_idle(uint64_t now, uint64_t age_ms) {
  pl_span_t *parked = NULL;
  pl_lock(&registry_lock);
  for (pl_tcache_t *tc = registry; tc; tc = tc->next) {
    if (__atomic_load_n(&tc->last_slow_ms, __ATOMIC_RELAXED) + age_ms > now) continue;
    /* Its parked large block goes back now, whatever the owner does next:
     * the slot is only ever swapped atomically.  (A LARGE span's links
     * are unused: they chain these.) */
    pl_span_t *s = __atomic_exchange_n(&tc->large_pending, NULL, __ATOMIC_ACQ_REL);
    if (s) {
      s->next = parked;
      parked = s;
    }
    if (__atomic_load_n(&tc->poked, __ATOMIC_RELAXED)) continue;
    bool holds = false;
    for (unsigned c = 1; c <= PL_NCLASSES && !holds; c++)
      holds = pl_bin_count(tc, c) != 0;
    if (!holds) continue;
    __atomic_store_n(&tc->poked, 1, __ATOMIC_RELAXED);
    for (unsigned c = 1; c <= PL_NCLASSES; c++)
      __atomic_store_n(&tc->bins[c].end, tc->arr[c], __ATOMIC_RELAXED);
  }
  pl_unlock(&registry_lock);
  /* After the unlock: a free may purge, which asks the registry. */
  while (parked) {
    pl_span_t *s = parked;
    parked = s->next;
    s->next = NULL;
    pl_span_free(s);
  }
}

bool pl_tcache_others_busy(uint64_t now) {
  pl_tcache_t *self = pl_tc;
  bool busy = false;
  pl_lock(&registry_lock);
  for (pl_tcache_t *tc = registry; tc && !busy; tc = tc->next)
    busy = tc != self && __atomic_load_n(&tc->last_slow_ms, __ATOMIC_RELAXED) + PL_BUSY_MS > now;
  pl_unlock(&registry_lock);
  return busy;
}

void pl_tcache_unpoke(pl_tcache_t *tc) {
  __atomic_store_n(&tc->poked, 0, __ATOMIC_RELAXED);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) pl_bin_open(tc, c);
}

static void registry_add(pl_tcache_t *tc) {
  tc->prev = NULL;
  tc->next = registry;
  if (registry) registry->prev = tc;
  registry = tc;
  __atomic_store_n(&nactive, nactive + 1, __ATOMIC_RELAXED);
}

static void registry_remove(pl_tcache_t *tc) {
  if (tc->prev)
    tc->prev->next = tc->next;
  else
    registry = tc->next;
  if (tc->next) tc->next->prev = tc->prev;
  __atomic_store_n(&nactive, nactive - 1, __ATOMIC_RELAXED);
}

/* Frees the thread has made into its cache, modulo 2^32 (for
 * burst_refill): whole free ticks, the current one's pushes, and those
 * that flushed a full bin. */
static uint32_t thread_frees(const pl_tcache_t *tc) {
  return tc->free_rounds * PL_FREE_TICK + (PL_FREE_TICK - pl_tls.free_tick) + tc->flushing_frees;
}

pl_tcache_t *pl_tcache_create(void) {
  pl_lock(&registry_lock);
  pl_tcache_t *tc = pool;
  if (tc) pool = tc->next;
  pl_unlock(&registry_lock);
  if (tc == NULL) {
    tc = pl_meta_alloc(sizeof(pl_tcache_t) + total_slots * sizeof(void *),
                       PL_CACHELINE);
    if (tc == NULL) return NULL;
    memset(tc->burst_slots, 0, sizeof tc->burst_slots);
  }
  tc->large_pending = NULL; /* (a recycled cache's was given back) */
  tc->bins = pl_tls.bins; /* this thread's: creation runs in the owner */
  tc->free_rounds = 0;
  tc->flushing_frees = 0;
  tc->refilled = 0;
  tc->limit_bytes = 0;
  tc->walk_recheck_at = 0;
  tc->walk_may = false;
  uint32_t frees = thread_frees(tc);
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    void **slot = tc->slot_storage + starter_off[c];
    tc->real_limit[c] = pl_tcache_cap[c] < START_LIMIT ? pl_tcache_cap[c] : START_LIMIT;
    tc->limit_bytes += (size_t)tc->real_limit[c] * pl_class_info[c].size;
    tc->arr[c] = slot;
    tc->bins[c].floor = slot;
    tc->bins[c].top = slot;
    tc->bins[c].end = slot + tc->real_limit[c];
    tc->bins[c].recip = pl_class_recip_shifted(c);
    tc->overflowed[c] = 0;
    tc->refills[c] = 0;
    tc->refill_run[c] = 0;
    tc->walk_refills[c] = 0;
    tc->walk_run[c] = 0;
    tc->quick_churn[c] = 0;
    tc->refill_frees[c] = frees;
    tc->refill_blocks[c] = 0;
  }
  tc->bins[0] = (pl_bin_t){0};
  tc->arr[0] = NULL;
  tc->trim_cursor = 0;
  tc->real_limit[0] = 0;
  tc->poked = 0;
  tc->last_slow_ms = pl_os_now_ms();
  tc->state = PL_TC_ACTIVE;
  pl_lock(&registry_lock);
  registry_add(tc);
  pl_unlock(&registry_lock);
  return tc;
}

/* Bytes of blocks in the cache: the sum over the bins of the bytes of
 * their slots in use times the class size, divided once at the end (8
 * instructions a bin). */
static size_t cache_bytes(const pl_tcache_t *tc) {
  size_t total = 0;
  for (unsigned c = 1; c <= PL_NCLASSES; c++)
    total += (size_t)((const char *)tc->bins[c].top - (const char *)tc->arr[c]) *
             pl_class_info[c].size;
  return total / sizeof(void *);
}

/* Gives the oldest k blocks of bin c back to the central lists; returns
 * how many it gave. */
static uint32_t flush_bin(pl_tcache_t *tc, unsigned c, uint32_t k) {
  pl_bin_t *b = &tc->bins[c];
  void **a = tc->arr[c];
  uint32_t n = pl_bin_count(tc, c);
  if (k > n) k = n;
  if (k == 0) return 0;
  pl_central_free_batch(c, a, k);
  memmove(a, a + k, (n - k) * sizeof(void *));
  /* Top moves down: the floor (if the trim had one) goes back to arr. */
  __atomic_store_n(&b->floor, a, __ATOMIC_RELAXED);
  __atomic_store_n(&b->top, a + (n - k), __ATOMIC_RELAXED);
  return k;
}

void pl_tcache_flush_all(pl_tcache_t *tc) {
  if (tc->state != PL_TC_ACTIVE) return;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) flush_bin(tc, c, pl_bin_count(tc, c));
  pl_large_flush_pending(&tc->large_pending);
}

void pl_tcache_destroy(pl_tcache_t *tc) {
  if (tc == NULL || tc->state != PL_TC_ACTIVE) return;
  __atomic_store_n(&tc->last_slow_ms, 0, __ATOMIC_RELAXED); /* not busy */
  pl_tcache_flush_all(tc);
  pl_lock(&registry_lock);
  registry_remove(tc);
  /* Empty and closed again (a poke can no longer reach them): what the
   * thread frees from now on, say in another library's TLS destructor,
   * takes the slow path. */
  memset(tc->bins, 0, sizeof pl_tls.bins);
  tc->bins = NULL;
  tc->state = PL_TC_DEAD;
  tc->next = pool;
  pool = tc;
  pl_unlock(&registry_lock);
  /* Only now: while the bins were open, the thread's cache was this one. */
  if (pl_tc == tc) pl_tc = &pl_tcache_dead;
}

/* Many threads share PALLET_TCACHE_TOTAL (32 MiB, as gperftools'
 * tcmalloc.max_total_thread_cache_bytes): with 16 threads on 2 cores, a
 * scratch server mix (an LRU table under striped locks, values of 16 B
 * to 80 KiB evicted by whichever thread, per-request copies) held 53 MB
 * in its caches for 38 MB live, and peaked at 106 MB against glibc's
 * 74 MB; with the shared bound, 85 MB, same time.  bench-servermix
 * with 16 and 8 threads: 0.97x the peak RSS, time within noise (9
 * interleaved runs).  A total of 16 MiB took that mix to 73 MB, but
 * servermix with 16 threads to 1.33x the time and with 8 to 1.10x. */
size_t pl_tcache_budget(void) {
  size_t n = __atomic_load_n(&nactive, __ATOMIC_RELAXED);
  if (pl_tcache_total_bytes == 0 || n == 0) return pl_tcache_max_bytes;
  size_t b = pl_tcache_total_bytes / n;
  if (b < PL_TCACHE_MIN_BUDGET) b = PL_TCACHE_MIN_BUDGET;
  return b < pl_tcache_max_bytes ? b : pl_tcache_max_bytes;
}

/* Keeps the cache within its byte budget: a cache holding bytes (over
 * the budget) flushes half of every bin, largest classes first, until it
 * is under half the budget. */
static void enforce_budget(pl_tcache_t *tc, size_t bytes, size_t budget) {
  for (unsigned c = PL_NCLASSES; c >= 1 && bytes > budget / 2; c--) {
    uint32_t n = pl_bin_count(tc, c);
    if (n) bytes -= (size_t)flush_bin(tc, c, (n + 1) / 2) * pl_class_info[c].size;
  }
}

/* The fast paths keep no byte count.  Every BUDGET_RECOUNT slow-path
 * events the bins are counted, at about 800 instructions a count; so
 * the budget holds within that many refills or flushes.  No bin holds
 * more than its limit, so while the limits' bytes (limit_bytes, kept by
 * set_limit) fit the budget, the blocks do too and the count is
 * skipped: it had cost about 50 instructions an event, a tenth of the
 * allocator's work on a working set of 256 B-4 KiB blocks (a scratch
 * count, 2.4 of 24.9 instructions an operation). */
#define BUDGET_RECOUNT 16

static void check_budget(pl_tcache_t *tc) {
  if (++tc->events % BUDGET_RECOUNT != 0) return;
  size_t budget = pl_tcache_budget();
  if (tc->limit_bytes <= budget) return;
  size_t bytes = cache_bytes(tc);
  if (bytes > budget) enforce_budget(tc, bytes, budget);
}

/* Bin cls, empty, at its cap, grows to nl slots past it: its own array
 * (made the first time). */
static void grow_burst(pl_tcache_t *tc, unsigned cls, uint32_t nl) {
  void **a = tc->burst_slots[cls];
  if (a == NULL) {
    a = pl_meta_alloc(pl_tcache_round_cap[cls] * sizeof(void *), PL_CACHELINE);
    if (a == NULL) return;
    tc->burst_slots[cls] = a;
  }
  move_bin(tc, cls, a);
  set_limit(tc, cls, nl);
}

/* Does this refill, bringing got blocks of class cls, count towards the
 * runs of refills above?  Only in a burst, where the thread allocates
 * more than it frees: since the bin's last refill, it freed fewer
 * blocks (of any class) than one and a half times the blocks its
 * refills (of any class) brought meanwhile, which leaves room for a
 * temporary freed for each block kept (a parser building nodes of a few
 * kinds).  A thread that frees as it allocates, say a stage of a
 * pipeline freeing what the stage before made, random-walks in each
 * class, and its bins refill only when their walks reach empty: in
 * bench-pipeline 96 % of the refills follow 8 or more frees per block
 * refilled.  Before, such walks made runs of refills and of flushes
 * often enough to grow many bins past their caps for good; now they
 * grow a bin only while the thread's cache is a small part of the heap
 * (walk_may_grow).  (Counting the frees against the bin's own last
 * refill alone left bursts with temporaries in several classes at their
 * caps: 1.35x-1.46x the instructions.)  Classes above BIG_SIZE count
 * every refill: one block there is a span, and blocks replaced at
 * random (bench-bands large) needed their bins grown. */
#define BURST_FREES_X2 3 /* frees per block refilled, times 2 */
static bool burst_refill(pl_tcache_t *tc, unsigned cls, uint32_t got) {
  uint32_t frees = thread_frees(tc);
  uint64_t freed = frees - tc->refill_frees[cls];
  uint64_t brought = tc->refilled - tc->refill_blocks[cls];
  tc->refill_frees[cls] = frees;
  tc->refill_blocks[cls] = tc->refilled;
  tc->refilled += got;
  return freed * 2 < brought * BURST_FREES_X2 || pl_class_info[cls].size > BIG_SIZE;
}

/* A random walk's runs of refills and flushes grow a bin too, while the
 * thread's cache holds at most 1/PL_TCACHE_WALK_SHARE of the heap's
 * memory in use (the spans of all heaps) divided among the threads'
 * caches: where the heap is big, what a walking bin parks is a small
 * part of it, and each doubling of a bin's limit makes its walk reach
 * empty or full about four times less often.  With burst refills
 * alone, a thread replacing 4,096 blocks of 256 B-4 KiB at random ran
 * 25.2 allocator instructions an operation (above a bump allocator)
 * against 12.4 before burst_refill, and one replacing 2,000 of 1-16 KiB
 * 34.6 against 18.5, in 1.07x and 1.09x the time; with a share of 1/16,
 * 12.6 and 20.5, while bench-pipeline's peak RSS stays at 4.6-4.9 MiB
 * (8.6-8.8 with no bound on the share, 8.2-8.3 before burst_refill).
 * With 1/32: 19.4 and 31.2.  (Without the division among caches,
 * bench-larson's peak RSS was 7-9 % higher than with burst refills
 * alone, with it 2-3 %.)  The cache is counted
 * (cache_bytes, about 800 instructions) only when a walk's run would
 * grow a bin, and its answer holds for the next WALK_RECHECK slow-path
 * events: in bench-workingset, whose cache is about a tenth of its heap,
 * counting at each such run (1,201 counts in 2 million operations, all
 * noes) took 0.6 instructions an operation. */
#define WALK_RECHECK 64
static bool walk_may_grow(pl_tcache_t *tc) {
  if (tc->events < tc->walk_recheck_at) return tc->walk_may;
  size_t caches = __atomic_load_n(&nactive, __ATOMIC_RELAXED);
  tc->walk_may =
      cache_bytes(tc) * PL_TCACHE_WALK_SHARE * (caches ? caches : 1) <= pl_span_active_bytes();
  tc->walk_recheck_at = tc->events + WALK_RECHECK;
  return tc->walk_may;
}

void *pl_tcache_refill_pop(pl_tcache_t *tc, unsigned cls) {
  pl_bin_t *b = &tc->bins[cls];
  void **a = tc->arr[cls];
  uint32_t lim = tc->real_limit[cls];
  uint32_t want = (lim + 1) / 2;
  if (want == 0) want = 1;
  /* A class used in bursts (see BURST_RUNS): its blocks went back to the
   * central lists by the hundred and now come back the same way.  The bin
   * is empty here, so it can change arrays. */
  uint32_t cap = pl_tcache_cap[cls], burst = pl_tcache_burst_cap[cls], round = pl_tcache_round_cap[cls];
  uint32_t runs = lim > cap && cap >= BURST_MIN_CAP ? BURST_ON_RUNS
                 : cap < BURST_MIN_CAP && (size_t)lim * pl_class_info[cls].size >= BURST_BYTES
                     ? BURST_LONG_RUNS
                     : BURST_RUNS;
  bool churn = lim < round && tc->quick_churn[cls] >= CHURN_RUNS;
  if (lim >= cap &&
      (churn || (lim < burst && tc->overflowed[cls] >= runs &&
                 (tc->refill_run[cls] >= runs || (tc->walk_run[cls] >= runs && walk_may_grow(tc)))))) {
    uint32_t most = churn ? round : burst;
    if (churn) { /* within half the budget of each cache now (more threads, smaller budgets) */
      size_t now = pl_tcache_budget() / 2 / pl_class_info[cls].size;
      if (now < most) most = now > burst ? (uint32_t)now : burst;
    }
    tc->quick_churn[cls] = 0;
    if (most > lim) grow_burst(tc, cls, lim * 2 > most ? most : lim * 2);
  }
  /* A class that runs empty again is hot: let it hold more (unless it has
   * been overflowing too, i.e. it is just churning around the limit).
   * Before the refill: the bin is empty, should it change arrays. */
  if (lim < cap && tc->overflowed[cls] < 2) {
    uint32_t nl = lim * 2;
    set_limit(tc, cls, nl > cap ? cap : nl);
  }
  a = tc->arr[cls]; /* (set_limit may have moved the bin) */
  size_t got = pl_central_alloc_batch(cls, a, want);
  if (got == 0) return NULL;
  tc->overflowed[cls] = 0;
  if (burst_refill(tc, cls, (uint32_t)got) && tc->refills[cls] < 255) tc->refills[cls]++;
  if (tc->walk_refills[cls] < 255) tc->walk_refills[cls]++;
  got--;
  void **p = a[got];
  __atomic_store_n(&b->top, a + got, __ATOMIC_RELAXED);
  p[0] = NULL;
  check_budget(tc);
  return p;
}

void pl_tcache_flush_push(pl_tcache_t *tc, unsigned cls, void *p) {
  pl_bin_t *b = &tc->bins[cls];
  tc->flushing_frees++;
  /* The first flush since a refill ends that run of refills (whose burst
   * refills may be none: then an older run must not count). */
  if (tc->overflowed[cls] == 0) {
    uint32_t since = thread_frees(tc) - tc->refill_frees[cls]; /* (this one included) */
    if (since > tc->real_limit[cls] + 1) tc->quick_churn[cls] = 0;
    else if (tc->quick_churn[cls] < 255) tc->quick_churn[cls]++;
    tc->refill_run[cls] = tc->refills[cls];
    tc->refills[cls] = 0;
    tc->walk_run[cls] = tc->walk_refills[cls];
    tc->walk_refills[cls] = 0;
  }
  if (tc->overflowed[cls] < 255) tc->overflowed[cls]++;
  /* A class that keeps overflowing without running empty in between is
   * freed more than allocated here (a consumer thread): let it hold more,
   * so that it flushes in bigger batches. */
  uint32_t cap = (pl_tcache_cap[cls] + 1) / 2;
  if (tc->real_limit[cls] < cap && tc->overflowed[cls] >= 2) {
    uint32_t nl = tc->real_limit[cls] * 2;
    set_limit(tc, cls, nl > cap ? cap : nl);
  }
  /* A bin that only overflows is not allocated from here: keeping half
   * of it would only park memory.  Flush all of it, in one batch. */
  uint32_t n = pl_bin_count(tc, cls);
  flush_bin(tc, cls, tc->overflowed[cls] >= 2 ? n : (n + 1) / 2);
  void **t = b->top;
  *t = p;
  __atomic_store_n(&b->top, t + 1, __ATOMIC_RELAXED);
  *(uintptr_t *)p = pl_free_key(p);
  check_budget(tc);
}

/* The trim.  A bin grows past its cap in bursts (pl_tcache_refill_pop),
 * and a steady mix can grow it too: a bin that random-walks between
 * running empty and overflowing makes runs of refills and of flushes
 * from time to time (far fewer since burst_refill).  Left alone, such
 * limits only grew: a pipeline of 4 threads, each freeing the blocks
 * the one before made (16 B - 4 KiB), held 9.3 MB in its caches after
 * 1.6 s for 0.13 MB live, and peaked at 14.9 MB (glibc: 3 MB).  So at
 * every free tick the trim looks at the next PL_TRIM_BINS bins (each
 * bin every 96 ticks, 12288 frees), and at a bin past its cap:
 *  - ceiling: if, since the last look, the count never reached half the
 *    limit, the limit halves (not below the cap), blocks past it go back;
 *  - floor: if the count never went below the floor, the blocks under
 *    it sat idle all that time, and go back (the oldest, at the bottom
 *    of the stack) when they are a quarter of the limit or more.
 * Then it sets the floor at half the count, and the ceiling at half the
 * limit if the count is below that.  A bin used in bursts fills past
 * half its limit and runs nearly empty between two looks, and keeps its
 * limit and its blocks.  The watching costs the fast paths nothing: they
 * compare with floor and end as always, and reaching one takes the slow
 * path once (pl_tcache_floor_pop, api.c's free_small). */
#define TRIM_IDLE_PART 4

void pl_tcache_trim_step(pl_tcache_t *tc) {
  unsigned c = tc->trim_cursor;
  for (unsigned i = 0; i < PL_TRIM_BINS; i++) {
    if (++c > PL_NCLASSES) c = 1;
    uint32_t lim = tc->real_limit[c], cap = pl_tcache_cap[c];
    if (lim <= cap) continue;
    pl_bin_t *b = &tc->bins[c];
    void **a = tc->arr[c];
    uint32_t n = pl_bin_count(tc, c), idle = (uint32_t)(b->floor - a);
    if (__atomic_load_n(&b->end, __ATOMIC_RELAXED) != a + lim) { /* not reached, or poked */
      uint32_t nl = lim / 2 > cap ? lim / 2 : cap;
      if (n > nl) {
        uint32_t gone = flush_bin(tc, c, n - nl); /* the oldest: idle first */
        n -= gone;
        idle = idle > gone ? idle - gone : 0;
      }
      set_limit(tc, c, nl);
      lim = nl;
    }
    if (idle > 0 && idle * TRIM_IDLE_PART >= lim) n -= flush_bin(tc, c, idle);
    __atomic_store_n(&b->floor, a + (lim > cap ? n / 2 : 0), __ATOMIC_RELAXED);
    if (lim > cap && n < lim / 2 && !__atomic_load_n(&tc->poked, __ATOMIC_RELAXED))
      __atomic_store_n(&b->end, a + lim / 2, __ATOMIC_RELAXED);
  }
  tc->trim_cursor = c;
}

/* See pl_tcache_trim_step: the count went below the floor.  The floor
 * halves, so that the next look knows how low the count went to within
 * a factor of two, at one slow pop per halving. */
void *pl_tcache_floor_pop(pl_tcache_t *tc, unsigned cls) {
  pl_bin_t *b = &tc->bins[cls];
  void **a = tc->arr[cls], **t = b->top;
  __atomic_store_n(&b->floor, a + (t - a) / 2, __ATOMIC_RELAXED);
  __atomic_store_n(&b->top, --t, __ATOMIC_RELAXED);
  void **p = *t;
  p[0] = NULL;
  return p;
}

bool pl_tcache_holds(pl_tcache_t *tc, unsigned cls, const void *p) {
  if (tc->state != PL_TC_ACTIVE) return false;
  for (void **t = tc->arr[cls]; t < tc->bins[cls].top; t++)
    if (*t == p) return true;
  return false;
}

size_t pl_tcache_count_class(unsigned cls) {
  size_t n = 0;
  pl_lock(&registry_lock);
  for (pl_tcache_t *tc = registry; tc; tc = tc->next)
    n += pl_bin_count(tc, cls);
  pl_unlock(&registry_lock);
  return n;
}

size_t pl_tcache_live(void) {
  pl_lock(&registry_lock);
  size_t n = nactive;
  pl_unlock(&registry_lock);
  return n;
}

void pl_tcache_fork_prepare(void) { pl_lock(&registry_lock); }
void pl_tcache_fork_parent(void) { pl_unlock(&registry_lock); }
/* Only the forking thread lives on in the child.  The other threads'
 * caches leave the registry: their bins are in those threads' TLS, which
 * glibc hands to the next threads the child creates, so a registered
 * cache would read (statistics) and poke (decay) a new thread's bins.
 * Their blocks are not flushed: one of those threads may have been half
 * way through a push or pop at the fork.  They stay lost to the child,
 * with their caches' metadata. */
void pl_tcache_fork_child(void) {
  pl_lock_init(&registry_lock);
  pl_tcache_t *self = pl_tc, *tc = registry;
  registry = NULL;
  nactive = 0;
  while (tc) {
    pl_tcache_t *next = tc->next;
    if (tc == self) {
      registry_add(tc);
    } else {
      tc->bins = NULL;
      tc->state = PL_TC_DEAD;
      tc->next = tc->prev = NULL;
    }
    tc = next;
  }
}
