/*
 * api.c — the public entry points: the pallet_ names, and (when built with
 * PL_OVERRIDE) the standard and glibc-internal names as aliases of them.
 *
 * The two hottest paths are written out here, each a handful of
 * instructions with one unlikely branch to a cold slow path:
 *   malloc(n <= 1 KiB): class by table lookup, pop from the thread cache.
 *   free(p):  class from the arena's page words (chunk.h), check p is a
 *             block start and not already freed (the key), push.
 * Everything else goes through the slow paths below, which validate every
 * pointer and stop the program with a one-line message on misuse.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "canary.h"
#include "central.h"
#include "chunk.h"
#include "common.h"
#include "error.h"
#include "heapmap.h"
#include "large.h"
#include "lifecycle.h"
#include "meta.h"
#include "options.h"
#include "os.h"
#include "pallet.h"
#include "sizeclass.h"
#include "span.h"
#include "stats.h"
#include "tcache.h"

/* Entry points start on a 64-byte boundary, so that their fast paths keep
 * the same alignment whatever changes elsewhere in the file: with the same
 * instructions, bench-realloc took 1.13x the time (15 interleaved runs)
 * when an unrelated change moved realloc from 32 to 48 bytes past a line
 * start.  Aligned, the two builds timed alike (0.99x, 11 runs). */
#define API PL_EXPORT __attribute__((aligned(64)))

/* ---- helpers -------------------------------------------------------- */

PL_INLINE void *enomem(void) {
  errno = ENOMEM;
  return NULL;
}

/* Decay: at most every quarter of the decay time, a thread that reaches
 * the heap (refill, flush, large or huge block) gives back free memory
 * unused for the decay time.  The background thread, when enabled, does
 * the same on a timer, for processes that go quiet. */
static uint64_t next_decay_ms;

static void decay_if_due(uint64_t now) {
  uint64_t next = __atomic_load_n(&next_decay_ms, __ATOMIC_RELAXED);
  if (now < next) return;
  uint64_t period = pl_opt.decay_ms / 4 + 1;
  if (!__atomic_compare_exchange_n(&next_decay_ms, &next, now + period, false,
                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;
  if (PL_UNLIKELY(pl_opt.background)) pl_background_ensure();
  pl_decay_run(pl_opt.decay_ms);
}

/* At every 4th slow event of the thread: the clock read, the stamp and
 * the check cost bench-bands large 5 % of its instructions when made at
 * each (doc/design.md, memory return). */
static PL_NOINLINE void decay_tick(void) {
  if (++pl_tls.slow_tick & 3) return;
  uint64_t now = pl_os_now_ms();
  pl_tcache_t *tc = pl_tc;
  if (tc->state == PL_TC_ACTIVE) __atomic_store_n(&tc->last_slow_ms, now, __ATOMIC_RELAXED);
  decay_if_due(now);
}

/* A decay pass found this thread idle, holding a cache, and poked it: its
 * next free lands here and gives the whole cache back (and runs the next
 * pass if one is due, since an idle thread may be all that still calls
 * in). */
static PL_NOINLINE void give_back_idle_cache(pl_tcache_t *tc) {
  pl_tcache_unpoke(tc);
  pl_tcache_flush_all(tc);
  decay_tick();
}

/* Every PL_FREE_TICK fast frees (tcache.h): the thread's whole cache back
 * to the central lists if the thread has not reached the heap (refill,
 * flush, large or huge block) for the decay time, or was poked
 * meanwhile: it is not using what it holds.  Otherwise one step of the
 * trim (tcache.c), and a decay pass if one is due. */
static PL_NOINLINE void free_tick(void) {
  pl_tls.free_tick = PL_FREE_TICK;
  pl_tcache_t *tc = pl_tc;
  if (tc->state == PL_TC_ACTIVE) tc->free_rounds++;
  uint64_t now = pl_os_now_ms();
  if (tc->state == PL_TC_ACTIVE &&
      (__atomic_load_n(&tc->poked, __ATOMIC_RELAXED) ||
       now - __atomic_load_n(&tc->last_slow_ms, __ATOMIC_RELAXED) >= pl_opt.decay_ms))
    give_back_idle_cache(tc);
  else {
    if (tc->state == PL_TC_ACTIVE) pl_tcache_trim_step(tc);
    decay_if_due(now);
  }
}

/* The two halves of the fast paths, shared with the slow paths.  pop: the
 * top of a non-empty bin, with its free key cleared; push: onto a bin
 * with room, with the free key written, counting one free towards the
 * free tick. */
PL_INLINE void *bin_pop(pl_mybin_t b, void **t) {
  t--;
  PL_MYBIN_STORE(b, top, t);
  void **p = *t;
  if (pl_config_hardening) p[0] = NULL;
  return p;
}

PL_INLINE void bin_push(pl_mybin_t b, void **t, void *p, uintptr_t key) {
  *t = p;
  PL_MYBIN_STORE(b, top, t + 1);
  if (pl_config_hardening) *(uintptr_t *)p = key;
  if (PL_UNLIKELY(PL_MYBIN_TICK(b))) free_tick();
}

/* A block from bin cls of the thread's real cache, whose top reached its
 * floor: under the trim's floor (tcache.c), a pop; at the array's start
 * (empty), a refill.  NULL when out of memory. */
static void *pop_at_floor(pl_tcache_t *tc, unsigned cls) {
  if (tc->bins[cls].top != tc->arr[cls]) return pl_tcache_floor_pop(tc, cls);
  decay_tick();
  return pl_tcache_refill_pop(tc, cls);
}

/* A block of class cls for the calling thread, from its cache, a refill,
 * or (while it has no cache) the central lists.  NULL when out of memory. */
static void *alloc_small(unsigned cls) {
  pl_tcache_t *tc = pl_tc;
  if (PL_UNLIKELY(tc->state != PL_TC_ACTIVE)) {
    if (tc == &pl_tcache_boot) {
      pl_thread_start();
      tc = pl_tc;
    }
    if (tc->state != PL_TC_ACTIVE) {
      void *p;
      if (pl_central_alloc_batch(cls, &p, 1) == 0) return NULL;
      if (PL_UNLIKELY(pl_opt.junk)) pl_junk_check(p, pl_class_info[cls].size, cls);
      *(void **)p = NULL;
      return p;
    }
  }
  pl_mybin_t b = pl_my_class_bin(cls);
  void **t = PL_MYBIN_LOAD(b, top);
  if (!PL_MYBIN_EQ(t, b, floor)) return bin_pop(b, t);
  return pop_at_floor(tc, cls);
}

static void *alloc_canary(size_t a, size_t n, bool zero);
static void *alloc_any_raw(size_t n, bool zero);

/* Any size, alignment <= 16. */
static PL_NOINLINE void *alloc_any(size_t n, bool zero) {
  if (PL_UNLIKELY(n > PL_MAX_REQUEST)) return enomem();
  pl_ensure_init();
  if (PL_UNLIKELY(pl_opt.canary)) return alloc_canary(PL_MIN_ALIGN, n, zero);
  return alloc_any_raw(n, zero);
}

static PL_NOINLINE pl_tcache_t *start_thread_cache(void) {
  pl_thread_start();
  return pl_tc;
}

/* The calling thread's slot for its parked large block (large.h), in its
 * cache, which a thread that so far made only large blocks gets now.
 * Threads without a cache (PALLET_CANARY, PALLET_JUNK, a cache torn down)
 * share the slot of pl_tcache_dead, which is only ever swapped atomically
 * too: without it, a large block freed in those modes went straight back
 * to the page heap, and the next small allocation could take its first
 * page, so that a second free of the block freed that allocation instead
 * of stopping the program. */
static pl_span_t **thread_pending(void) {
  pl_tcache_t *tc = pl_tc;
  if (PL_UNLIKELY(tc == &pl_tcache_boot)) tc = start_thread_cache();
  return tc->state == PL_TC_ACTIVE ? &tc->large_pending : &pl_tcache_dead.large_pending;
}

/* A large or huge block of n bytes aligned to a, through the thread's
 * parked large block; NULL with ENOMEM when out of memory. */
static void *alloc_large(size_t n, size_t a, bool zero) {
  decay_tick();
  void *p = pl_large_alloc(n, a, zero, thread_pending());
  return p ? p : enomem();
}

static void *alloc_any_raw(size_t n, bool zero) {
  if (n <= PL_SMALL_MAX) {
    unsigned cls = pl_size_class(n);
    void *p = alloc_small(cls);
    if (p == NULL) return enomem();
    if (zero) memset(p, 0, pl_class_info[cls].size);
    return p;
  }
  return alloc_large(n, PL_MIN_ALIGN, zero);
}

/* Alignment a (a power of two). */
static void *alloc_aligned_raw(size_t a, size_t n);
static void *alloc_aligned(size_t a, size_t n) {
  if (a <= PL_MIN_ALIGN) return pallet_malloc(n); /* every block is 16-aligned */
  /* Up to a page, the class of n rounded up to a multiple of a is the
   * smallest whose size is a multiple of a (sizeclass.c), so every block
   * of its page-aligned spans is a-aligned: malloc's fast path with that
   * size.  (PL_SMALL_MAX is a multiple of a, so the rounding stays in
   * range.)  Static caches (PALLET_CANARY, no cache yet) have empty bins
   * and go on below. */
  unsigned off;
  if (PL_LIKELY(a <= PL_PAGE_SIZE && n - 1 < PL_SMALL_MAX &&
                pl_bin_offset((n + a - 1) & ~(a - 1), &off))) {
    pl_mybin_t b = pl_my_bin(off);
    void **t = PL_MYBIN_LOAD(b, top);
    if (PL_LIKELY(!PL_MYBIN_EQ(t, b, floor))) return bin_pop(b, t);
  }
  if (PL_UNLIKELY(n > PL_MAX_REQUEST || a > PL_MAX_REQUEST - n)) return enomem();
  pl_ensure_init();
  if (PL_UNLIKELY(pl_opt.canary)) return alloc_canary(a, n, false);
  return alloc_aligned_raw(a, n);
}

static void *alloc_aligned_raw(size_t a, size_t n) {
  if (a <= PL_PAGE_SIZE && n <= PL_SMALL_MAX) {
    unsigned cls = pl_size_class_aligned(n, a);
    if (cls != 0) {
      void *p = alloc_small(cls);
      return p ? p : enomem();
    }
  }
  return alloc_large(n ? n : 1, a, false);
}

/* What a pointer handed to free/realloc/malloc_usable_size is. */
typedef struct block_ref {
  int kind; /* 1 small, 2 large, 3 huge */
  unsigned cls;
  pl_span_t *span;
  pl_chunk_t *chunk;
  size_t usable;
} block_ref_t;

/* p lies in memory where blocks of class cls began at start and every one
 * of them has been freed: a block start was freed before, anything else
 * is a stray pointer. */
static PL_NORETURN PL_COLD void fatal_in_freed_span(const char *func, const void *p, uintptr_t start,
                                            unsigned cls) {
  size_t size = pl_class_info[cls].size;
  pl_fatal_ptr(func, ((uintptr_t)p - start) % size == 0 ? "double free" : "invalid pointer", p);
}

/* Validates p (not NULL) and describes it; on misuse reports and aborts.
 * func names the entry point in the message. */
static void resolve(void *p, const char *func, block_ref_t *r) {
  pl_chunk_t *c = pl_chunk_lookup(p);
  if (c == NULL) pl_fatal_ptr(func, "invalid pointer", p);
  /* A freed huge block, or a heap chunk given back: what was there has
   * been freed (a pointer that no block could have started at aside). */
  if (c->kind == PL_CHUNK_FREED)
    pl_fatal_ptr(func, ((uintptr_t)p & (PL_MIN_ALIGN - 1)) ? "invalid pointer" : "double free", p);
  r->chunk = c;
  if (c->kind == PL_CHUNK_HUGE) {
    if ((uintptr_t)p != c->base) pl_fatal_ptr(func, "invalid pointer", p);
    r->kind = 3;
    r->usable = c->usable;
    return;
  }
  if (c->kind != PL_CHUNK_HEAP) pl_fatal_ptr(func, "invalid pointer", p);
  size_t pi = pl_chunk_page_index(p);
  pl_pageword_t info = pl_pw_load(&c->page_info[pl_chunk_word_index(p)]);
  unsigned cls = pl_pw_class(info);
  if (cls == 0) {
    /* A large block's first page always names its span. */
    pl_span_t *s = c->page_span[pi];
    if (s != NULL && s->state == PL_SPAN_LARGE && (uintptr_t)p == s->start) {
      /* Freed, and parked by the thread that freed it (large.h). */
      if (__atomic_load_n(&s->flags, __ATOMIC_RELAXED) & PL_SPAN_PENDING)
        pl_fatal_ptr(func, "double free", p);
      r->kind = 2;
      r->span = s;
      r->usable = s->large_size;
      return;
    }
    /* Misuse: what p points into (the entries of a large or free span's
     * inner pages may be stale, span.h). */
    pl_span_t found;
    if (!pl_span_find(p, &found)) pl_fatal_ptr(func, "invalid pointer", p);
    /* A page of a small-block span whose blocks are all free and whose
     * memory went back to the OS (central.c): a block start there was
     * freed before.  Or one no block on which was handed out yet (its
     * page word still cold, span.h): a pointer pallet never gave. */
    if (found.state == PL_SPAN_SMALL) {
      if (pl_central_never_taken(p, found.cls)) pl_fatal_ptr(func, "invalid pointer", p);
      fatal_in_freed_span(func, p, found.start, found.cls);
    }
    if (found.state == PL_SPAN_FREE || found.state == PL_SPAN_BUSY) {
      /* Pages of a small-block span that went back to the heap keep its
       * class and first page (a ghost word, chunk.h). */
      unsigned g = pl_pw_ghost_class(info);
      if (g != 0)
        fatal_in_freed_span(func, p, c->base + (pl_pw_ghost_first_page(info) << PL_PAGE_SHIFT), g);
      /* A page-aligned pointer into free pages: what is left of a block
       * freed before. */
      if (((uintptr_t)p & (PL_PAGE_SIZE - 1)) == 0) pl_fatal_ptr(func, "double free", p);
    }
    pl_fatal_ptr(func, "invalid pointer", p);
  }
  size_t off = pl_pw_span_offset(info, p);
  if (pl_class_index(cls, off) * pl_class_info[cls].size != off ||
      pl_class_off_misaligned(off, pl_class_recip_shifted(cls)))
    pl_fatal_ptr(func, "invalid pointer", p);
  r->kind = 1;
  r->cls = cls;
  r->usable = pl_class_info[cls].size;
}

/* p, a small block of class cls, holds its free key (or waits in the
 * quarantine): freed before, unless it lies past every block its span
 * ever handed out, where the key went in with the span's first use and
 * p is a pointer pallet never gave. */
static PL_NORETURN PL_COLD PL_NOINLINE void fatal_free_block(const char *func, const void *p,
                                                           unsigned cls) {
  pl_fatal_ptr(func, pl_central_never_taken(p, cls) ? "invalid pointer" : "double free", p);
}

/* Is p, a small block in r, free already (it holds its free key)?  Keys
 * tell for certain where every block handed out has its first word
 * cleared: with the checks compiled in, and under PALLET_CANARY, whose
 * allocations all take alloc_small's path for threads without a cache.
 * Under PALLET_CANARY, a block in the quarantine is free too, even if a
 * write after free wiped its key (asked before its canary is checked:
 * under PALLET_JUNK too, the fill has overwritten the canary). */
PL_INLINE bool holds_free_key(const void *p, const block_ref_t *r) {
  return (pl_config_hardening || pl_opt.canary) && r->kind == 1 &&
         (*(const uintptr_t *)p == pl_free_key(p) ||
          (PL_UNLIKELY(pl_opt.canary) && pl_quarantine_holds(p)));
}

/* Gives back a small block whose pointer has been validated. */
static void free_small(void *p, unsigned cls, const char *func) {
  if (pl_config_hardening && *(uintptr_t *)p == pl_free_key(p)) fatal_free_block(func, p, cls);
  pl_tcache_t *tc = pl_tc;
  if (PL_UNLIKELY(tc->state != PL_TC_ACTIVE)) {
    if (tc == &pl_tcache_boot) {
      pl_thread_start();
      tc = pl_tc;
    }
    if (tc->state != PL_TC_ACTIVE) {
      if (PL_UNLIKELY(pl_opt.junk)) pl_junk_fill(p, pl_class_info[cls].size, cls);
      *(uintptr_t *)p = pl_free_key(p);
      if (PL_UNLIKELY(pl_opt.canary)) pl_quarantine_free(p, cls, func);
      else pl_central_free_batch(cls, &p, 1);
      return;
    }
  }
  if (PL_UNLIKELY(__atomic_load_n(&tc->poked, __ATOMIC_RELAXED))) give_back_idle_cache(tc);
  pl_mybin_t b = pl_my_class_bin(cls);
  void **t = PL_MYBIN_LOAD(b, top);
  if (t < tc->arr[cls] + tc->real_limit[cls]) {
    /* Room under the limit.  If not under end, the trim's ceiling
     * (tcache.c) was reached: end goes back to the limit.  The push counts
     * towards the tick like the fast path (which pointers outside the
     * arena, or a PALLET_CANARY run, never take). */
    if (t >= PL_MYBIN_LOAD(b, end)) pl_bin_open(tc, cls);
    bin_push(b, t, p, pl_free_key(p));
    return;
  }
  decay_tick();
  pl_tcache_flush_push(tc, cls, p);
}

PL_INLINE void free_ref(void *p, const block_ref_t *r, const char *func) {
  switch (r->kind) {
    case 1: free_small(p, r->cls, func); break;
    case 2: decay_tick(); pl_large_free(r->span, thread_pending()); break;
    default: decay_tick(); pl_huge_free(r->chunk); break;
  }
}

static PL_NOINLINE void free_slow(void *p) {
  if (p == NULL) return;
  int saved = errno;
  block_ref_t r;
  resolve(p, "free", &r);
  if (PL_UNLIKELY(pl_opt.canary)) {
    if (holds_free_key(p, &r)) fatal_free_block("free", p, r.cls);
    pl_canary_check(p, r.usable, "free");
  }
  free_ref(p, &r, "free");
  errno = saved;
}

/* free() of p (in the arena), when the thread has a cache (no
 * PALLET_CANARY, no PALLET_JUNK) and the bin of p's page's class is full
 * or poked: a block start of a small span needs no other lookup
 * (free_small checks the key and flushes); anything else takes
 * free_slow, which tells what it is.  The block-start test is made in
 * every build, as resolve() makes it (small_class_checked makes it only
 * with the checks on).  It reads the page word again: passing it from
 * the fast path cost that path an instruction. */
static PL_NOINLINE void free_to_full_bin(void *p) {
  pl_pageword_t info = pl_pw_load(&pl_arena_info[((uintptr_t)p - pl_arena_base) >> PL_PW_SHIFT]);
  unsigned cls = pl_pw_class(info);
  if (cls == 0 || pl_class_off_misaligned(pl_pw_span_offset(info, p), pl_class_recip_shifted(cls))) {
    free_slow(p);
    return;
  }
  int saved = errno;
  free_small(p, cls, "free");
  errno = saved;
}

/* PALLET_CANARY: n requested bytes with a checked tail (canary.h). */
static void *alloc_canary(size_t a, size_t n, bool zero) {
  if (n > PL_MAX_REQUEST - PL_CANARY_EXTRA - a) return enomem();
  void *p = a <= PL_MIN_ALIGN ? alloc_any_raw(n + PL_CANARY_EXTRA, zero)
                              : alloc_aligned_raw(a, n + PL_CANARY_EXTRA);
  if (p == NULL) return NULL;
  block_ref_t r;
  resolve(p, "malloc", &r);
  pl_canary_set(p, r.usable, n);
  return p;
}

/* ---- the malloc family ---------------------------------------------- */

/* malloc() of n bytes (1 .. PL_SMALL_MAX) whose bin is empty.  With a
 * real cache (not a static one, so no PALLET_CANARY or PALLET_JUNK, and
 * start-up is done), the refill without alloc_any's checks; otherwise
 * alloc_any.  The bin's offset is looked up again: passing it cost the
 * fast path a register copy. */
static PL_NOINLINE void *malloc_empty_bin(size_t n) {
  pl_tcache_t *tc = pl_tc;
  unsigned off;
  if (tc->state != PL_TC_ACTIVE || !pl_bin_offset(n, &off)) return alloc_any(n, false);
  void *p = pop_at_floor(tc, off >> PL_PW_BIN_SHIFT);
  return p ? p : enomem();
}

static PL_NOINLINE void *malloc_not_small(size_t n) { return alloc_any(n, false); }

/* malloc's fast path, shared with C++'s operator new: a pop from the bin
 * of n's class; empty_bin(n) when that bin is empty, not_small(n) when n
 * is above the small classes.  (Given constant functions, the calls are
 * direct tail calls.) */
PL_INLINE void *malloc_fast(size_t n, void *(*empty_bin)(size_t), void *(*not_small)(size_t)) {
  unsigned off;
  if (PL_UNLIKELY(!pl_bin_offset(n, &off))) return not_small(n);
  pl_mybin_t b = pl_my_bin(off);
  void **t = PL_MYBIN_LOAD(b, top);
  if (PL_LIKELY(!PL_MYBIN_EQ(t, b, floor))) return bin_pop(b, t);
  return empty_bin(n);
}

API void *pallet_malloc(size_t n) { return malloc_fast(n, malloc_empty_bin, malloc_not_small); }

API void pallet_free(void *p) {
  uintptr_t off = (uintptr_t)p - pl_arena_base;
  if (PL_UNLIKELY(off >= pl_arena_size)) goto slow; /* not in the arena */
  const pl_pageword_t *w = &pl_arena_info[off >> PL_PW_SHIFT];
  /* The bin of the page's class; class 0 (not a small block) has a bin
   * with limit 0 (all NULL).  With the checks on, the whole word is read
   * at once: its low half is span_neg. */
  uint32_t soff = 0, bin;
  if (pl_config_hardening) {
    uint64_t bits = __atomic_load_n((const pl_pageword_bits_t *)w, __ATOMIC_RELAXED);
    soff = (uint32_t)(bits + (uintptr_t)p); /* p's offset in its span */
    bin = (uint32_t)(bits >> 32);
  } else {
    bin = __atomic_load_n(&w->bin, __ATOMIC_RELAXED);
  }
  pl_mybin_t b = pl_my_bin(bin);
  void **t = PL_MYBIN_LOAD(b, top);
  if (PL_LIKELY(PL_MYBIN_BELOW(t, b, end))) {
    uintptr_t key = pl_free_key(p);
    if (pl_config_hardening) {
      /* p must start a block (the fraction of its offset in the span over
       * the block size is zero, see sizeclass.h), and must not hold its
       * free key already. */
      if (PL_UNLIKELY(pl_class_prod_misaligned(PL_MYBIN_MUL_RECIP(soff, b)) ||
                      *(uintptr_t *)p == key))
        goto slow;
    }
    bin_push(b, t, p, key);
    return;
  }
  /* A full (or poked) bin of a real cache: end is NULL only in bin 0 and
   * in threads without a real cache (none yet, PALLET_CANARY,
   * PALLET_JUNK, torn down). */
  if (PL_MYBIN_LOAD(b, end) != NULL) {
    free_to_full_bin(p);
    return;
  }
slow:
  free_slow(p);
}

API void *pallet_calloc(size_t nmemb, size_t size) {
  size_t total;
  if (PL_UNLIKELY(__builtin_mul_overflow(nmemb, size, &total))) return enomem();
  /* The malloc fast path, then the whole block zeroed (as the slow path
   * does): the bin's offset in the cache is its class times 32. */
  unsigned off;
  if (PL_UNLIKELY(!pl_bin_offset(total, &off))) return alloc_any(total, true);
  pl_mybin_t b = pl_my_bin(off);
  void **t = PL_MYBIN_LOAD(b, top);
  if (PL_LIKELY(!PL_MYBIN_EQ(t, b, floor)))
    return memset(bin_pop(b, t), 0, pl_class_info[off >> PL_PW_BIN_SHIFT].size);
  return alloc_any(total, true);
}

/* The class of p when p is a small block in the arena that passes free's
 * checks (a block start, not holding its free key); 0 for anything else:
 * large, huge, free or purged pages, pointers outside the arena, misuse.
 * The caller then takes its slow path, which tells them apart and
 * reports misuse. */
static inline unsigned small_class_checked(const void *p) {
  uintptr_t off = (uintptr_t)p - pl_arena_base;
  if (off >= pl_arena_size) return 0;
  pl_pageword_t w = pl_pw_load(&pl_arena_info[off >> PL_PW_SHIFT]);
  unsigned cls = pl_pw_class(w);
  if (cls == 0) return 0;
  if (pl_config_hardening &&
      (pl_class_off_misaligned(pl_pw_span_offset(w, p), pl_class_recip_shifted(cls)) ||
       *(const uintptr_t *)p == pl_free_key(p)))
    return 0;
  return cls;
}

/* A block that realloc grows past this size moves to a large span (a run
 * of whole pages), which later growth can extend in place, instead of to
 * the next size class: the blocks of big classes are kept for reuse by
 * the thread caches and the transfer arrays (8 of them a class above
 * 32 KiB), so a vector moving through class after class left that many
 * of each behind.  But a large span costs the page heap's lock, where a
 * class's blocks come from the thread cache: with 32 KiB, bench-realloc
 * had 10.4 MiB peak RSS against 13.8, but 4 threads each growing one
 * buffer to 16-128 KiB at a time took 1.11x the time and 1.15x the peak
 * RSS; with 64 KiB, 11.1 MiB, 1.05x and 1.03x; with 128 KiB nothing
 * gained (7 interleaved runs each). */
#define REALLOC_LARGE_MIN ((size_t)64 << 10)

/* realloc's fast path: p a small block (small_class_checked), n in 1 ..
 * REALLOC_LARGE_MIN, no PALLET_CANARY.  A block that still fits stays;
 * one that grows moves (see pallet_realloc) through the malloc and free
 * fast paths.  NULL: take the slow path (also for every n above
 * REALLOC_LARGE_MIN, which a growth there turns into a large span: one
 * test here for both bounds). */
static inline void *realloc_small_fast(void *p, size_t n) {
  if (n - 1 >= REALLOC_LARGE_MIN || PL_UNLIKELY(pl_opt.canary)) return NULL;
  unsigned cls = small_class_checked(p);
  if (cls == 0) return NULL;
  size_t usable = pl_class_info[cls].size;
  if (n <= usable) return p;
  size_t want = usable + usable / 2;
  if (want < n) want = n;
  void *q = pallet_malloc(want);
  if (PL_UNLIKELY(q == NULL)) return NULL;
  memcpy(q, p, usable);
  /* p is checked already: free's push without the lookup. */
  pl_mybin_t b = pl_my_class_bin(cls);
  void **t = PL_MYBIN_LOAD(b, top);
  if (PL_LIKELY(PL_MYBIN_BELOW(t, b, end))) {
    bin_push(b, t, p, pl_free_key(p));
  } else {
    pallet_free(p);
  }
  return q;
}

/* realloc's shortcut for a large block in the arena that n still fits
 * without giving back a tail (see pallet_realloc): what resolve() would
 * find there, checked the same way (the first page of a large span names
 * it; a freed or parked one, or a pointer that is not its start, takes
 * the slow path, which reports it).  A buffer grown a little at a time
 * makes most of its calls here. */
static inline bool realloc_large_fits(const void *p, size_t n) {
  uintptr_t off = (uintptr_t)p - pl_arena_base;
  if (off >= pl_arena_size || PL_UNLIKELY(pl_opt.canary)) return false;
  size_t pi = off >> PL_PAGE_SHIFT;
  if (pl_pw_class(pl_pw_load(&pl_arena_info[off >> PL_PW_SHIFT])) != 0) return false;
  const pl_span_t *s = pl_arena_spans[pi];
  if (s == NULL || s->state != PL_SPAN_LARGE || s->start != (uintptr_t)p ||
      (__atomic_load_n(&s->flags, __ATOMIC_RELAXED) & PL_SPAN_PENDING))
    return false;
  size_t u = s->large_size;
  return n <= u && n > u - u / 4;
}

API void *pallet_realloc(void *p, size_t n) {
  void *moved = realloc_small_fast(p, n);
  if (PL_LIKELY(moved != NULL)) return moved;
  if (realloc_large_fits(p, n)) return p;
  if (p == NULL) return pallet_malloc(n);
  if (n == 0) {
    pallet_free(p);
    return NULL;
  }
  block_ref_t r;
  resolve(p, "realloc", &r);
  if (holds_free_key(p, &r)) fatal_free_block("realloc", p, r.cls);
  if (PL_UNLIKELY(n > PL_MAX_REQUEST)) return enomem();
  if (PL_UNLIKELY(pl_opt.canary)) {
    size_t old_n = pl_canary_check(p, r.usable, "realloc");
    if (n <= r.usable - PL_CANARY_EXTRA) {
      pl_canary_set(p, r.usable, n);
      return p;
    }
    void *q = alloc_any(n, false);
    if (q == NULL) return NULL;
    memcpy(q, p, old_n < n ? old_n : n);
    int saved = errno;
    free_ref(p, &r, "realloc");
    errno = saved;
    return q;
  }
  if (n <= r.usable) {
    /* Fits where it is.  A large or huge block gives back its tail when
     * that is a quarter of it or more: less would take back the room a
     * growth just left (below) at the next call, to ask for it again at
     * the one after. */
    if (n <= r.usable - r.usable / 4) {
      if (r.kind == 2) pl_large_resize(r.span, n);
      else if (r.kind == 3 && n > PL_LARGE_MAX) pl_huge_resize(r.chunk, n);
    }
    return p;
  }
  /* Growing.  A buffer grown a little at a time (a string, a vector) gets
   * a quarter more than it asked for where it grows in place or moves to
   * a large span or a huge mapping, half as much again where it moves to
   * a size class: so it is resized or moved a few times per doubling,
   * not at every page or through every class. */
  size_t roomy = r.usable + (n > REALLOC_LARGE_MIN ? r.usable / 4 : r.usable / 2);
  if (roomy < n) roomy = n;
  if (r.kind == 2) {
    if (roomy > n && roomy <= PL_LARGE_MAX && pl_large_resize(r.span, roomy)) return p;
    if (pl_large_resize(r.span, n)) return p;
  } else if (r.kind == 3) {
    if (roomy > n && pl_huge_resize(r.chunk, roomy)) return p;
    if (pl_huge_resize(r.chunk, n)) return p;
  }
  /* Past REALLOC_LARGE_MIN (up to a chunk) a large span, even where a
   * class would fit; otherwise whatever alloc_any makes of the size. */
  bool to_large = n > REALLOC_LARGE_MIN && n <= PL_LARGE_MAX;
  size_t bound = to_large ? PL_LARGE_MAX : n <= PL_SMALL_MAX ? PL_SMALL_MAX : roomy;
  size_t want = roomy < bound ? roomy : bound;
  void *q = to_large ? alloc_large(want, PL_MIN_ALIGN, false) : alloc_any(want, false);
  if (q == NULL && want > n)
    q = to_large ? alloc_large(n, PL_MIN_ALIGN, false) : alloc_any(n, false);
  if (q == NULL) return NULL; /* errno is ENOMEM; p is untouched */
  memcpy(q, p, r.usable);
  int saved = errno;
  free_ref(p, &r, "realloc");
  errno = saved;
  return q;
}

API void *pallet_reallocarray(void *p, size_t nmemb, size_t size) {
  size_t total;
  if (PL_UNLIKELY(__builtin_mul_overflow(nmemb, size, &total))) return enomem();
  return pallet_realloc(p, total);
}

static bool is_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

API int pallet_posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment % sizeof(void *) != 0 || !is_pow2(alignment)) return EINVAL;
  int saved = errno;
  void *p = alloc_aligned(alignment, size);
  errno = saved;
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

API void *pallet_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(alignment, size);
}

API void *pallet_memalign(size_t alignment, size_t size) {
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_pow2(alignment)) {
    size_t a = PL_MIN_ALIGN;
    while (a < alignment) a <<= 1;
    alignment = a;
  }
  return alloc_aligned(alignment, size);
}

API void *pallet_valloc(size_t size) {
  return alloc_aligned(pl_os_page_size(), size);
}

API void *pallet_pvalloc(size_t size) {
  size_t page = pl_os_page_size();
  if (size > PL_MAX_REQUEST - page) return enomem();
  size_t rounded = PL_ALIGN_UP(size ? size : 1, page);
  return alloc_aligned(page, rounded);
}

API size_t pallet_malloc_usable_size(void *p) {
  if (PL_LIKELY(!pl_opt.canary)) {
    unsigned cls = small_class_checked(p);
    if (PL_LIKELY(cls != 0)) return pl_class_info[cls].size;
  }
  if (p == NULL) return 0;
  block_ref_t r;
  resolve(p, "malloc_usable_size", &r);
  if (holds_free_key(p, &r)) fatal_free_block("malloc_usable_size", p, r.cls);
  if (PL_UNLIKELY(pl_opt.canary)) return pl_canary_check(p, r.usable, "malloc_usable_size");
  return r.usable;
}

API void pallet_free_sized(void *p, size_t size) {
  (void)size;
  pallet_free(p);
}

API void pallet_free_aligned_sized(void *p, size_t alignment, size_t size) {
  (void)alignment;
  (void)size;
  pallet_free(p);
}

/* ---- glibc extras --------------------------------------------------- */

API int pallet_malloc_trim(size_t pad) {
  (void)pad;
  pl_ensure_init();
  int saved = errno;
  pl_tcache_t *tc = pl_tc;
  if (tc->state == PL_TC_ACTIVE) pl_tcache_flush_all(tc);
  pl_large_flush_pending(&pl_tcache_dead.large_pending);
  pl_quarantine_flush();
  pl_central_release_spares();
  size_t released = pl_central_purge_idle_pages(0);
  released += pl_large_purge(0);
  errno = saved;
  return released > 0;
}

API struct pallet_mallinfo2 pallet_mallinfo2(void) {
  pl_ensure_init();
  pallet_stats_t st;
  pl_stats_collect(&st);
  pl_huge_totals_t h;
  pl_huge_totals(&h);
  struct pallet_mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = st.mapped - h.mapped - h.cached; /* heap chunks */
  mi.ordblks = 1;
  mi.smblks = 0;
  mi.hblks = h.count;                  /* huge blocks, own mappings */
  mi.hblkhd = h.mapped;
  mi.usmblks = 0;
  mi.fsmblks = st.tcache + st.central; /* free blocks in caches/lists */
  size_t heap_used = st.allocated - st.huge;
  mi.uordblks = heap_used;             /* bytes in use in the heap */
  mi.fordblks = mi.arena > heap_used ? mi.arena - heap_used : 0;
  mi.keepcost = st.free_spans;         /* releasable by malloc_trim */
  return mi;
}

static int clamp_int(size_t v) { return v > (size_t)0x7fffffff ? 0x7fffffff : (int)v; }

API struct pallet_mallinfo pallet_mallinfo(void) {
  struct pallet_mallinfo2 m2 = pallet_mallinfo2();
  struct pallet_mallinfo m = {
      clamp_int(m2.arena),   clamp_int(m2.ordblks), clamp_int(m2.smblks),
      clamp_int(m2.hblks),   clamp_int(m2.hblkhd),  clamp_int(m2.usmblks),
      clamp_int(m2.fsmblks), clamp_int(m2.uordblks), clamp_int(m2.fordblks),
      clamp_int(m2.keepcost)};
  return m;
}

API void pallet_malloc_stats(void) {
  pl_ensure_init();
  pallet_stats_t st;
  pl_stats_collect(&st);
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "Arena 0:\nsystem bytes     = ");
  pl_msg_dec(&m, st.mapped);
  pl_msg_str(&m, "\nin use bytes     = ");
  pl_msg_dec(&m, st.allocated);
  pl_msg_str(&m, "\nTotal (incl. mmap):\nsystem bytes     = ");
  pl_msg_dec(&m, st.mapped + st.metadata);
  pl_msg_str(&m, "\nin use bytes     = ");
  pl_msg_dec(&m, st.allocated);
  pl_msg_str(&m, "\nmax mmap regions = ");
  pl_msg_dec(&m, st.chunks);
  pl_msg_str(&m, "\nmax mmap bytes   = ");
  pl_msg_dec(&m, st.mapped);
  pl_msg_str(&m, "\n");
  pl_msg_write(&m);
}

API int pallet_malloc_info(int options, FILE *fp) {
  if (options != 0 || fp == NULL) return EINVAL; /* as glibc */
  pl_ensure_init();
  pallet_stats_t st;
  pl_stats_collect(&st);
  pl_huge_totals_t h;
  pl_huge_totals(&h);
  fprintf(fp, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  for (size_t c = 1; c < st.nclasses; c++) {
    const pallet_class_stats_t *cs = &st.classes[c];
    size_t free_blocks = cs->cached + cs->central;
    if (free_blocks)
      fprintf(fp, "  <size from=\"%zu\" to=\"%zu\" total=\"%zu\" count=\"%zu\"/>\n",
              cs->size, cs->size, free_blocks * cs->size, free_blocks);
  }
  fprintf(fp, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(fp, "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n", st.free_spans + st.purged);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n", st.mapped - h.mapped);
  fprintf(fp, "<system type=\"max\" size=\"%zu\"/>\n", st.mapped - h.mapped);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n", st.mapped - h.mapped);
  fprintf(fp, "<aspace type=\"mprotect\" size=\"%zu\"/>\n</heap>\n", st.mapped - h.mapped);
  fprintf(fp, "<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(fp, "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n", st.free_spans + st.purged);
  fprintf(fp, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n", h.count, h.mapped);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n", st.mapped);
  fprintf(fp, "<system type=\"max\" size=\"%zu\"/>\n", st.mapped);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n", st.mapped);
  fprintf(fp, "<aspace type=\"mprotect\" size=\"%zu\"/>\n</malloc>\n", st.mapped);
  return 0;
}

/* mallopt: pallet has no glibc-style tunables; parameters are accepted and
 * have no effect (use the PALLET_* variables). */
API int pallet_mallopt(int param, int value) {
  (void)param;
  (void)value;
  return 1;
}

/* ---- statistics and checks ------------------------------------------ */

API int pallet_stats_get(pallet_stats_t *out) {
  pl_ensure_init();
  pl_stats_collect(out);
  return 0;
}

API void pallet_stats_print(FILE *out, int format) {
  pl_ensure_init();
  pallet_stats_t st;
  pl_stats_collect(&st);
  char buf[12288];
  size_t n = pl_stats_format(&st, format, buf, sizeof buf);
  if (out == NULL) out = stderr;
  fwrite(buf, 1, n, out);
  fflush(out);
}

API int pallet_heap_check(void) {
  pl_ensure_init();
  int rc = pl_span_heap_check();
  if (rc == 0) rc = pl_central_check();
  return rc;
}

API int pallet_heap_map(FILE *out) {
  pl_ensure_init();
  return pl_heap_map_write(out);
}

/* ---- the standard names --------------------------------------------- */
#if PL_OVERRIDE
#if defined(__GNUC__) && !defined(__clang__)
#define PL_ALIAS(name, target)                                              \
  extern __typeof__(target) name                                            \
      __attribute__((alias(#target), visibility("default"), copy(target)))
#else
#define PL_ALIAS(name, target) \
  extern __typeof__(target) name __attribute__((alias(#target), visibility("default")))
#endif

PL_ALIAS(malloc, pallet_malloc);
PL_ALIAS(free, pallet_free);
PL_ALIAS(calloc, pallet_calloc);
PL_ALIAS(realloc, pallet_realloc);
PL_ALIAS(reallocarray, pallet_reallocarray);
PL_ALIAS(posix_memalign, pallet_posix_memalign);
PL_ALIAS(aligned_alloc, pallet_aligned_alloc);
PL_ALIAS(memalign, pallet_memalign);
PL_ALIAS(valloc, pallet_valloc);
PL_ALIAS(pvalloc, pallet_pvalloc);
PL_ALIAS(malloc_usable_size, pallet_malloc_usable_size);
PL_ALIAS(free_sized, pallet_free_sized);
PL_ALIAS(free_aligned_sized, pallet_free_aligned_sized);
PL_ALIAS(malloc_trim, pallet_malloc_trim);
PL_ALIAS(mallinfo2, pallet_mallinfo2);
PL_ALIAS(mallinfo, pallet_mallinfo);
PL_ALIAS(malloc_stats, pallet_malloc_stats);
PL_ALIAS(malloc_info, pallet_malloc_info);
PL_ALIAS(mallopt, pallet_mallopt);
/* cfree: gone from glibc's headers since 2.26, but libc.so keeps it for
 * old binaries (cfree@GLIBC_2.2.5), where it frees into glibc's heap: a
 * block of pallet's given to it would crash there.  tcmalloc and
 * mimalloc define it too. */
extern void cfree(void *);
PL_ALIAS(cfree, pallet_free);
/* glibc's internal and alternative names, so nothing reaches its heap
 * (and so that a static link never pulls in glibc's malloc.o). */
PL_ALIAS(__libc_malloc, pallet_malloc);
PL_ALIAS(__libc_free, pallet_free);
PL_ALIAS(__libc_calloc, pallet_calloc);
PL_ALIAS(__libc_realloc, pallet_realloc);
PL_ALIAS(__libc_memalign, pallet_memalign);
PL_ALIAS(__libc_valloc, pallet_valloc);
PL_ALIAS(__libc_pvalloc, pallet_pvalloc);
PL_ALIAS(__libc_mallinfo, pallet_mallinfo);
PL_ALIAS(__libc_mallinfo2, pallet_mallinfo2);
PL_ALIAS(__libc_mallopt, pallet_mallopt);
PL_ALIAS(__posix_memalign, pallet_posix_memalign);
PL_ALIAS(__malloc, pallet_malloc);
PL_ALIAS(__free, pallet_free);
PL_ALIAS(__calloc, pallet_calloc);
PL_ALIAS(__realloc, pallet_realloc);
PL_ALIAS(__memalign, pallet_memalign);
PL_ALIAS(__valloc, pallet_valloc);
PL_ALIAS(__pvalloc, pallet_pvalloc);
PL_ALIAS(__mallinfo, pallet_mallinfo);
PL_ALIAS(__mallinfo2, pallet_mallinfo2);
PL_ALIAS(__malloc_trim, pallet_malloc_trim);
PL_ALIAS(__malloc_usable_size, pallet_malloc_usable_size);
PL_ALIAS(__malloc_stats, pallet_malloc_stats);
PL_ALIAS(__malloc_info, pallet_malloc_info);
PL_ALIAS(__mallopt, pallet_mallopt);

/* Called by glibc's own fork() and thread exit in static programs.  pallet
 * handles fork with pthread_atfork and thread exit with a key destructor,
 * so these have nothing left to do. */
API void __malloc_fork_lock_parent(void);
API void __malloc_fork_unlock_parent(void);
API void __malloc_fork_unlock_child(void);
API void __malloc_arena_thread_freeres(void);
API void *__glibc_morecore(ptrdiff_t increment);
void __malloc_fork_lock_parent(void) {}
void __malloc_fork_unlock_parent(void) {}
void __malloc_fork_unlock_child(void) {}
void __malloc_arena_thread_freeres(void) {}
void *__glibc_morecore(ptrdiff_t increment) {
  (void)increment;
  return NULL;
}

/* ---- C++: the replaceable operators new and delete ------------------- */

/* The global allocation and deallocation functions of C++ (C++17: plain,
 * array, nothrow, sized and aligned forms), under their Itanium C++ ABI
 * names, as jemalloc, tcmalloc and mimalloc define them.  Without them,
 * a C++ program's new and delete reach pallet through libstdc++'s
 * (one call more each way, and sized delete through plain delete).  new
 * takes malloc's fast path; a failure calls the program's new-handler
 * and tries again while there is one, then throws std::bad_alloc through
 * the C++ runtime's own thrower (looked up weakly: pallet links no C++
 * runtime, and a C program never calls these).  Every form of delete is
 * free(): the size and alignment it is given are not needed to find the
 * block, and a misuse is reported as free()'s. */
typedef void (*pl_new_handler_t)(void);
extern pl_new_handler_t _ZSt15get_new_handlerv(void) __attribute__((weak)); /* std::get_new_handler */
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn)); /* libstdc++ */
extern void _ZNSt3__117__throw_bad_allocEv(void) __attribute__((weak, noreturn)); /* libc++ */

/* A function of the C++ runtime: the weak reference, resolved when
 * libpallet was loaded; failing that, looked up among the objects loaded
 * now (a C program, Python for one, that dlopen()ed a C++ library after
 * libpallet was loaded: the runtime came with that library). */
#define CXX_RUNTIME(fn) ((fn) ? (fn) : (__typeof__(&fn))pl_os_find_symbol(#fn))

/* new of n bytes aligned to a (0: malloc's alignment) found no memory:
 * the new-handler loop.  A nothrow form returns NULL where the others
 * throw.  (A handler that throws from a nothrow form is not caught here:
 * pallet is C.) */
static PL_NOINLINE PL_COLD void *new_failed(size_t n, size_t a, bool nothrow) {
  for (;;) {
    pl_new_handler_t (*get)(void) = CXX_RUNTIME(_ZSt15get_new_handlerv);
    pl_new_handler_t h = get ? get() : NULL;
    if (h == NULL) break;
    h();
    void *p = a ? pallet_memalign(a, n) : pallet_malloc(n);
    if (p != NULL) return p;
  }
  if (nothrow) return NULL;
  void (*thrower)(void) = CXX_RUNTIME(_ZSt17__throw_bad_allocv);
  if (thrower == NULL) thrower = CXX_RUNTIME(_ZNSt3__117__throw_bad_allocEv);
  if (thrower) {
    thrower();
    __builtin_unreachable();
  }
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: operator new(): out of memory for ");
  pl_msg_dec(&m, n);
  pl_msg_str(&m, " bytes, and no C++ runtime to throw std::bad_alloc\n");
  pl_msg_fatal(&m);
}

static PL_NOINLINE void *new_empty_bin(size_t n) {
  void *p = malloc_empty_bin(n);
  return p ? p : new_failed(n, 0, false);
}
static PL_NOINLINE void *new_not_small(size_t n) {
  void *p = alloc_any(n, false);
  return p ? p : new_failed(n, 0, false);
}

/* (Reached only through the aliases below.) */
#define CXX_API static __attribute__((aligned(64), used))

CXX_API void *cxx_new(size_t n) { return malloc_fast(n, new_empty_bin, new_not_small); }

CXX_API void *cxx_new_nothrow(size_t n, const void *nothrow_tag) {
  (void)nothrow_tag;
  void *p = pallet_malloc(n);
  return p ? p : new_failed(n, 0, true);
}

CXX_API void *cxx_new_aligned(size_t n, size_t a) {
  void *p = pallet_memalign(a, n);
  return p ? p : new_failed(n, a, false);
}

CXX_API void *cxx_new_aligned_nothrow(size_t n, size_t a, const void *nothrow_tag) {
  (void)nothrow_tag;
  void *p = pallet_memalign(a, n);
  return p ? p : new_failed(n, a, true);
}

/* operator new(size_t) and new[](size_t); their nothrow and aligned forms */
PL_ALIAS(_Znwm, cxx_new);
PL_ALIAS(_Znam, cxx_new);
PL_ALIAS(_ZnwmRKSt9nothrow_t, cxx_new_nothrow);
PL_ALIAS(_ZnamRKSt9nothrow_t, cxx_new_nothrow);
PL_ALIAS(_ZnwmSt11align_val_t, cxx_new_aligned);
PL_ALIAS(_ZnamSt11align_val_t, cxx_new_aligned);
PL_ALIAS(_ZnwmSt11align_val_tRKSt9nothrow_t, cxx_new_aligned_nothrow);
PL_ALIAS(_ZnamSt11align_val_tRKSt9nothrow_t, cxx_new_aligned_nothrow);
/* operator delete(void *) and delete[](void *), with a size, an
 * alignment, both, or nothrow_t: free(), whose one argument comes first
 * (the others, in later registers, are not read) */
PL_ALIAS(_ZdlPv, pallet_free);
PL_ALIAS(_ZdaPv, pallet_free);
PL_ALIAS(_ZdlPvm, pallet_free);
PL_ALIAS(_ZdaPvm, pallet_free);
PL_ALIAS(_ZdlPvRKSt9nothrow_t, pallet_free);
PL_ALIAS(_ZdaPvRKSt9nothrow_t, pallet_free);
PL_ALIAS(_ZdlPvSt11align_val_t, pallet_free);
PL_ALIAS(_ZdaPvSt11align_val_t, pallet_free);
PL_ALIAS(_ZdlPvmSt11align_val_t, pallet_free);
PL_ALIAS(_ZdaPvmSt11align_val_t, pallet_free);
PL_ALIAS(_ZdlPvSt11align_val_tRKSt9nothrow_t, pallet_free);
PL_ALIAS(_ZdaPvSt11align_val_tRKSt9nothrow_t, pallet_free);
#endif
