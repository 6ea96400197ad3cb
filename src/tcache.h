/*
 * tcache.h — thread caches: per thread, for each size class, a stack of
 * free blocks kept out of band (an array of pointers), a count and a limit.
 *
 * malloc pops, free pushes — also blocks that other threads allocated.  A
 * bin that runs empty refills a batch from the central lists; one that
 * reaches its limit flushes the older half back.  Limits start small and
 * grow for classes that keep running empty (or keep overflowing), up to a
 * per-class cap, and a byte budget bounds the whole cache (checked on slow
 * paths: it holds within 16 refills or flushes).  A class used in bursts
 * (runs of flushes, then runs of refills: blocks allocated by the
 * hundred or thousand, then freed) grows past the cap, into an array of
 * its own.
 *
 * Because the stacks live outside the blocks, a write after free cannot
 * poison them and a pop needs no decoding.  What free writes into a block
 * is only a key, secret ^ address, in its first word: a block being freed
 * that already holds its key is a double free.  malloc clears the key.
 *
 * Every thread starts pointing at a static cache, with empty bins (limit
 * 0), so its first malloc or free falls into the slow path, which sets the
 * real one up: the fast paths never test "initialised yet?".  The bins,
 * the cache pointer and a countdown of frees (pl_tls below) are pallet's
 * only thread-local data.
 *
 * Invariant: 0 <= count <= limit <= the slots of the bin's array (its
 * starter array's, its cap, or its round cap once the bin has a burst
 * array; see PL_TCACHE_STARTER_SLOTS) for every bin of an active cache,
 * and no two bins' arrays overlap;
 * arr[0 .. count) are distinct free blocks of that class.
 * Locking: a cache is touched only by its thread (other threads read the
 * counts for statistics, relaxed); the registry of caches has one lock.
 */
#ifndef PL_TCACHE_H
#define PL_TCACHE_H

#include <stddef.h>

#include "chunk.h"
#include "common.h"
#include "sizeclass.h"

/* One bin, 32 bytes: a stack of pointers [arr, top) in the bin's array
 * arr (kept in the cache, pl_tcache_t), the gate end = arr + limit, and
 * what free's fast path needs about the class (the reciprocal for the
 * block-start check) on the same line.  malloc pops while top != floor,
 * free pushes while top < end.  floor is arr and end is arr + limit,
 * except while the trim watches a bin grown past its cap (tcache.c):
 * then floor may be higher and end lower, and a malloc or free that
 * reaches one takes the slow path once, which moves it back (so the
 * trim learns that the bin went that low or that high) and goes on.  A
 * static empty cache has all pointers NULL, so both fast paths leave
 * before they read the rest; so does bin 0 (not a small block) of every
 * cache.  arr <= floor <= top <= end, or end = arr while poked. */
typedef struct pl_bin {
  void **top;     /* one past the newest free block */
  void **end;     /* arr + limit (or the trim's ceiling); arr while poked */
  uint64_t recip; /* pl_class_recip_shifted(cls) */
  void **floor;   /* malloc's gate: arr (or the trim's floor) */
} pl_bin_t;

/* Page words (chunk.h) hold a class's bin offset as class * 32. */
_Static_assert(sizeof(pl_bin_t) == (1u << PL_PW_BIN_SHIFT), "bins are 32 bytes");

/* The three static caches (pl_tcache_boot: this thread has no cache yet;
 * pl_tcache_init: its cache is being built, for a re-entrant call;
 * pl_tcache_dead: its cache has been torn down) are told apart by their
 * addresses.  Their state is 0, so they live in .bss (pages of zeros
 * until written, and they are only read) rather than in 9 KiB of .data,
 * two pages of libpallet's file that every process had resident. */
typedef enum {
  PL_TC_STATIC = 0, /* one of the static caches */
  PL_TC_DEAD = 2,   /* a real cache torn down (recycled, in the pool) */
  PL_TC_ACTIVE = 3, /* a real cache in use */
} pl_tc_state_t;

typedef struct pl_tcache {
  pl_bin_t *bins; /* the owner's bins, in its pl_tls; NULL in the static caches */
  uint8_t state;
  uint8_t overflowed[PL_NCLASSES + 1]; /* flushes since the last refill */
  uint8_t refills[PL_NCLASSES + 1];    /* burst refills since the last flush */
  uint8_t refill_run[PL_NCLASSES + 1]; /* burst refills in the last run of them */
  uint8_t walk_refills[PL_NCLASSES + 1]; /* refills of any kind since the last flush */
  uint8_t walk_run[PL_NCLASSES + 1];     /* refills of any kind in the last run of them */
  uint8_t quick_churn[PL_NCLASSES + 1];  /* refills soon followed by a flush, in a row */
  uint32_t trim_cursor;                /* the bin the trim looked at last */
  uint32_t free_rounds;     /* free ticks (PL_FREE_TICK pushes) so far */
  uint32_t flushing_frees;  /* frees that found their bin full */
  uint32_t refilled; /* blocks brought by refills, modulo 2^32 */
  /* The thread's frees (tcache.c, thread_frees) and refilled at each
   * bin's last refill (burst_refill) */
  uint32_t refill_frees[PL_NCLASSES + 1];
  uint32_t refill_blocks[PL_NCLASSES + 1];
  uint32_t real_limit[PL_NCLASSES + 1]; /* the limits (end may be lower) */
  size_t limit_bytes;                   /* the limits' bytes: sum of limit x class size */
  uint64_t events;       /* slow-path events, for the budget's recount */
  uint64_t walk_recheck_at; /* walk_may holds until this many events (tcache.c) */
  bool walk_may;            /* may a walk's run grow a bin (walk_may_grow) */
  uint32_t poked;        /* asked to give its cache back (idle thread) */
  uint64_t last_slow_ms; /* when this thread last reached the heap */
  struct pl_tcache *next, *prev;       /* registry */
  /* A bin's own array of pl_tcache_round_cap slots, from the first time
   * it grew past its cap (kept while the cache is recycled). */
  void **burst_slots[PL_NCLASSES + 1];
  /* Each bin's array (its starter, full or burst array), where its
   * blocks start: count = top - arr. */
  void **arr[PL_NCLASSES + 1];
  /* The large block this thread freed last, parked until its next large
   * malloc or free (large.h); given back with the cache, or by a decay
   * pass once the thread has been idle for the decay time.  Swapped
   * atomically only. */
  struct pl_span *large_pending;
  void *slot_storage[];
} pl_tcache_t;

/* Blocks in bin c of tc, and its fast-path limit (other threads read them
 * for statistics, under the registry lock). */
PL_INLINE uint32_t pl_bin_count(const pl_tcache_t *tc, unsigned c) {
  return (uint32_t)(__atomic_load_n(&tc->bins[c].top, __ATOMIC_RELAXED) - tc->arr[c]);
}
PL_INLINE uint32_t pl_bin_limit(const pl_tcache_t *tc, unsigned c) {
  return (uint32_t)(__atomic_load_n(&tc->bins[c].end, __ATOMIC_RELAXED) - tc->arr[c]);
}

/* Opens bin c's free gate at its limit (end = arr + limit), unless the
 * cache is poked: after a limit change, an unpoke, or a free that
 * reached the trim's ceiling. */
PL_INLINE void pl_bin_open(pl_tcache_t *tc, unsigned c) {
  if (!__atomic_load_n(&tc->poked, __ATOMIC_RELAXED))
    __atomic_store_n(&tc->bins[c].end, tc->arr[c] + tc->real_limit[c], __ATOMIC_RELAXED);
}

/* The thread's pallet state, all the thread-local data pallet has but
 * the byte that names its home span heap (span.c) (initial-
 * exec TLS, 3.1 KiB, unless configured with --disable-initial-exec-tls,
 * which dlopen() needs without a bigger static TLS surplus: see
 * doc/design.md): its bins, its cache, and a countdown of frees.
 * The bins live here rather than in the cache so that the fast paths
 * reach a bin at a fixed offset from the thread pointer (%fs on x86-64:
 * one instruction less in malloc and in free than loading the cache
 * pointer first).  They are all zero (empty, limit 0) while the thread
 * has no real cache: before its first call, while the cache is built,
 * under PALLET_CANARY or PALLET_JUNK, and after it is torn down.
 * Each free that its fast path completes counts the countdown down; at
 * zero the thread takes pl_free_tick's short detour (api.c), which reads
 * the clock, runs a decay pass if one is due and gives back the thread's
 * cache if the thread has not reached the heap for the decay time.  So
 * decay and the return of idle caches also happen in a program whose
 * calls all stay on the fast paths (a thread after a burst, doing light
 * work). */
#define PL_FREE_TICK 128
typedef struct pl_tls {
  pl_bin_t bins[PL_NCLASSES + 1]; /* first: bin offsets are class * 32 */
  pl_tcache_t *tc;
  uint32_t free_tick;
  uint32_t slow_tick; /* slow events, for decay_tick (api.c) */
} PL_ALIGNED(PL_CACHELINE) pl_tls_t;
extern __thread pl_tls_t pl_tls __attribute__((tls_model(PL_TLS_MODEL))) PL_HIDDEN;
#define pl_tc (pl_tls.tc)

/* The fast paths reach the calling thread's bin at byte offset off
 * (class * 32) through a handle, pl_my_bin(off), and the macros below.
 * On x86-64 (and no sanitizer, which must see every access) the bin is
 * addressed through %fs: the handle is pl_tls's offset from the thread
 * pointer, read from its GOT entry (a constant once linked into an
 * executable), and off, both in registers, so each access is one
 * instruction with no address arithmetic.  (GCC, given a __seg_fs
 * pointer instead, adds them first: one instruction more in malloc and
 * in free.)  The accesses are volatile asm with a memory clobber, so the
 * compiler keeps them in order with each other and with the plain C
 * accesses of the slow paths.  Elsewhere the handle is a plain pointer. */
#if defined(__x86_64__) && PL_TLS_INITIAL_EXEC && !defined(PL_SANITIZED)
typedef struct pl_mybin {
  uintptr_t tp, off;
} pl_mybin_t;
PL_INLINE pl_mybin_t pl_my_bin(unsigned off) {
  uintptr_t tp;
  __asm__("movq pl_tls@gottpoff(%%rip), %0" : "=r"(tp));
  return (pl_mybin_t){tp, off};
}
#define PL_MYBIN_LOAD(h, field)                                                    \
  ({                                                                               \
    void **v_;                                                                     \
    __asm__ volatile("movq %%fs:%c3(%1,%2), %0"                                    \
                     : "=r"(v_)                                                    \
                     : "r"((h).tp), "r"((h).off), "i"(offsetof(pl_bin_t, field))   \
                     : "memory");                                                  \
    v_;                                                                            \
  })
#define PL_MYBIN_STORE(h, field, v)                                                       \
  __asm__ volatile("movq %3, %%fs:%c2(%0,%1)"                                             \
                   :                                                                      \
                   : "r"((h).tp), "r"((h).off), "i"(offsetof(pl_bin_t, field)), "r"(v)   \
                   : "memory")
/* v == the field / v < the field (unsigned), from one compare. */
#define PL_MYBIN_EQ(v, h, field)                                                             \
  ({                                                                                         \
    bool c_;                                                                                 \
    __asm__ volatile("cmpq %%fs:%c3(%1,%2), %4"                                              \
                     : "=@ccz"(c_)                                                           \
                     : "r"((h).tp), "r"((h).off), "i"(offsetof(pl_bin_t, field)), "r"(v)     \
                     : "memory");                                                            \
    c_;                                                                                      \
  })
#define PL_MYBIN_BELOW(v, h, field)                                                          \
  ({                                                                                         \
    bool c_;                                                                                 \
    __asm__ volatile("cmpq %%fs:%c3(%1,%2), %4"                                              \
                     : "=@ccb"(c_)                                                           \
                     : "r"((h).tp), "r"((h).off), "i"(offsetof(pl_bin_t, field)), "r"(v)     \
                     : "memory");                                                            \
    c_;                                                                                      \
  })
/* x * the bin's recip (set once, when the cache is made). */
#define PL_MYBIN_MUL_RECIP(x, h)                                                  \
  ({                                                                              \
    uint64_t x_ = (x);                                                            \
    __asm__("imulq %%fs:%c3(%1,%2), %0"                                           \
            : "+r"(x_)                                                            \
            : "r"((h).tp), "r"((h).off), "i"(offsetof(pl_bin_t, recip)));         \
    x_;                                                                           \
  })
/* Counts the free tick down; true when it reaches zero. */
#define PL_MYBIN_TICK(h)                                                       \
  ({                                                                           \
    bool z_;                                                                   \
    __asm__ volatile("subl $1, %%fs:%c2(%1)"                                   \
                     : "=@ccz"(z_)                                             \
                     : "r"((h).tp), "i"(offsetof(pl_tls_t, free_tick))         \
                     : "memory");                                              \
    z_;                                                                        \
  })
#else
typedef pl_bin_t *pl_mybin_t;
PL_INLINE pl_mybin_t pl_my_bin(unsigned off) { return (pl_bin_t *)((char *)pl_tls.bins + off); }
#define PL_MYBIN_LOAD(h, field) __atomic_load_n(&(h)->field, __ATOMIC_RELAXED)
#define PL_MYBIN_STORE(h, field, v) __atomic_store_n(&(h)->field, (v), __ATOMIC_RELAXED)
#define PL_MYBIN_EQ(v, h, field) ((v) == PL_MYBIN_LOAD(h, field))
#define PL_MYBIN_BELOW(v, h, field) ((v) < PL_MYBIN_LOAD(h, field))
#define PL_MYBIN_MUL_RECIP(x, h) ((uint64_t)(x) * (h)->recip)
#define PL_MYBIN_TICK(h) (--pl_tls.free_tick == 0)
#endif
/* The calling thread's bin of class cls. */
PL_INLINE pl_mybin_t pl_my_class_bin(unsigned cls) { return pl_my_bin(cls << PL_PW_BIN_SHIFT); }

/* The fast paths' class lookup: for a request of n <= PL_SMALL_MAX bytes,
 * the byte offset in a cache of the bin of its class (class * 32).  Up to
 * PL_SMALL_LOOKUP_MAX, pl_bin_lookup indexed by n itself (2 KiB, so the
 * index needs no rounding); above, pl_bin_lookup_mid indexed by
 * (n - 1) / 128: above 1 KiB every class size is a multiple of 128
 * (sizeclass.h), so all requests in one 128-byte step share a class
 * (4 KiB, against a bit scan and five more instructions). */
#define PL_MID_LOOKUP_SHIFT 7
extern uint16_t pl_bin_lookup[PL_SMALL_LOOKUP_MAX + 1] PL_HIDDEN;
extern uint16_t pl_bin_lookup_mid[PL_SMALL_MAX >> PL_MID_LOOKUP_SHIFT] PL_HIDDEN;
/* false when n > PL_SMALL_MAX.  Tested in this order, n <= 1 KiB costs
 * one compare (malloc's fast path stays 13 instructions). */
PL_INLINE bool pl_bin_offset(size_t n, unsigned *off) {
  if (PL_LIKELY(n <= PL_SMALL_LOOKUP_MAX)) {
    *off = pl_bin_lookup[n];
    return true;
  }
  if (n > PL_SMALL_MAX) return false;
  *off = pl_bin_lookup_mid[(n - 1) >> PL_MID_LOOKUP_SHIFT];
  return true;
}

/* A bin whose cap is more than PL_TCACHE_STARTER_SLOTS starts in a
 * starter array of that many slots.  The starter arrays lie side by side
 * after the full arrays in a cache's slot storage, so a thread that keeps
 * a few blocks of a dozen small classes touches one page of slots rather
 * than one or two a class.  The first time its limit goes past the
 * starter array (its fourth doubling from 4), the bin moves its
 * blocks to its full array of cap slots.  Every class has a full array,
 * in class order; a class whose cap is at most PL_TCACHE_STARTER_SLOTS
 * starts there. */
#define PL_TCACHE_STARTER_SLOTS 32

/* Caps and budgets (options.c may change them before any cache exists). */
extern size_t pl_tcache_max_bytes PL_HIDDEN; /* per thread */
/* All threads' caches together (0: no such bound): with n caches, each
 * one's budget is pl_tcache_total_bytes / n, but at least
 * PL_TCACHE_MIN_BUDGET and at most pl_tcache_max_bytes. */
extern size_t pl_tcache_total_bytes PL_HIDDEN;
#define PL_TCACHE_MIN_BUDGET ((size_t)512 << 10)
/* The byte budget of each thread's cache now. */
size_t pl_tcache_budget(void) PL_HIDDEN;
extern uint32_t pl_tcache_cap[PL_NCLASSES + 1] PL_HIDDEN;
/* A bin grows past its cap on a random walk's runs only while the
 * thread's cache holds at most 1/PL_TCACHE_WALK_SHARE of the heap's
 * memory in use, divided by the number of caches (tcache.c,
 * walk_may_grow). */
#define PL_TCACHE_WALK_SHARE 16
/* What a bin may grow to in a class used in bursts (tcache.c). */
extern uint32_t pl_tcache_burst_cap[PL_NCLASSES + 1] PL_HIDDEN;
/* ... and in rounds of blocks that churn at its limit (tcache.c,
 * CHURN_RUNS): the slots of its own array. */
extern uint32_t pl_tcache_round_cap[PL_NCLASSES + 1] PL_HIDDEN;

/* Computes caps from the class sizes; called once at start-up. */
void pl_tcache_init_caps(void) PL_HIDDEN;
/* Builds the calling thread's cache; returns false if out of memory (the
 * thread then keeps using the central lists directly). */
pl_tcache_t *pl_tcache_create(void) PL_HIDDEN;
/* Flushes everything back to the central lists and recycles the cache;
 * the thread is then DEAD. */
void pl_tcache_destroy(pl_tcache_t *tc) PL_HIDDEN;
/* Flushes every bin of tc and gives back its parked large block (trim,
 * idle scavenging). */
void pl_tcache_flush_all(pl_tcache_t *tc) PL_HIDDEN;

/* Slow paths: bin of cls is empty / full. */
void *pl_tcache_refill_pop(pl_tcache_t *tc, unsigned cls) PL_HIDDEN;
void pl_tcache_flush_push(pl_tcache_t *tc, unsigned cls, void *p) PL_HIDDEN;
/* The trim of bins grown past their caps, one step every free tick
 * (api.c): it looks at the next PL_TRIM_BINS bins (tcache.c). */
#define PL_TRIM_BINS 1
void pl_tcache_trim_step(pl_tcache_t *tc) PL_HIDDEN;
/* malloc reached bin cls's floor above its array's start: lowers the
 * floor and pops. */
void *pl_tcache_floor_pop(pl_tcache_t *tc, unsigned cls) PL_HIDDEN;

/* Idle caches: a decay pass pokes every cache whose thread has not
 * reached the heap for age_ms and holds blocks: its bin limits drop to 0,
 * so the thread's next free takes the slow path, which gives the whole
 * cache back and lifts the limits (pl_tcache_unpoke).  The parked large
 * block of such a thread goes back at once, by this pass. */
void pl_tcache_poke_idle(uint64_t now, uint64_t age_ms) PL_HIDDEN;
/* Has a thread other than the caller reached the heap (refill, flush,
 * large block) in the last PL_BUSY_MS?  Such a thread will call in again
 * soon, so decay passes will run: the caller need not purge at once what
 * it frees (span.c, thread exit).  A thread whose cache is being torn
 * down does not count. */
#define PL_BUSY_MS 10
bool pl_tcache_others_busy(uint64_t now) PL_HIDDEN;
void pl_tcache_unpoke(pl_tcache_t *tc) PL_HIDDEN;

/* Bytes and blocks of class cls held by all caches (relaxed reads). */
size_t pl_tcache_count_class(unsigned cls) PL_HIDDEN;
size_t pl_tcache_live(void) PL_HIDDEN;
/* Does tc's bin of class cls hold p? (double-free confirmation) */
bool pl_tcache_holds(pl_tcache_t *tc, unsigned cls, const void *p) PL_HIDDEN;
void pl_tcache_fork_prepare(void) PL_HIDDEN;
void pl_tcache_fork_parent(void) PL_HIDDEN;
void pl_tcache_fork_child(void) PL_HIDDEN;

extern pl_tcache_t pl_tcache_boot PL_HIDDEN;
extern pl_tcache_t pl_tcache_init PL_HIDDEN;
extern pl_tcache_t pl_tcache_dead PL_HIDDEN;

#endif /* PL_TCACHE_H */
