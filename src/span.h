/*
 * span.h — the span heap ("central heap"): runs of pages inside chunks.
 *
 * A span is a run of whole pages of one heap chunk.  Its descriptor lives
 * out of band (metadata), never in front of the memory it describes.  A
 * span is FREE (in the heap), SMALL (carved into blocks of one size class,
 * owned by the central lists) or LARGE (one block handed to the program).
 *
 * Free spans sit in doubly linked lists bucketed by exact length (1 .. 512
 * pages); a bitmap of non-empty buckets finds the smallest fitting bucket
 * with a few bit scans.  Allocation takes a span from the smallest bucket
 * that fits and splits it; freeing coalesces with free neighbours on both
 * sides, found through the chunk's page map, so that no two free spans are
 * ever adjacent.
 *
 * Invariants (pl_span_heap_check verifies them):
 *   - the spans of a chunk tile it: their lengths add up to 512 pages;
 *   - page_span[p] is the span covering page p for every page of a SMALL
 *     span, and for the first and last page of every other span (the
 *     entries of the other pages may name any descriptor, live or not:
 *     pl_span_find finds the span covering any page);
 *   - page_info[w] (the chunk's page words, one each 4 KiB, chunk.h) is
 *     pl_pw_make(class, span start) on the warm words of a SMALL span: the
 *     class's bin offset and the span's start negated modulo 2^32, and
 *     {0, 0} on its cold words (cold_words); {0, 0} on the words of a
 *     LARGE span; {0, 0} or a ghost word on those of a FREE one, ghosts
 *     only if it is flagged PL_SPAN_GHOST;
 *   - no two adjacent spans are both FREE;
 *   - every FREE span is in the bucket of its length, and only there.
 * Heaps: there are pl_span_nheaps heaps (1 to PL_SPAN_HEAPS_MAX), each
 * with its own chunks, buckets, descriptors and lock; a chunk belongs to
 * one heap for as long as it is mapped (its record's heap field), so a
 * span is freed, coalesced, grown and shrunk under its own heap's lock.
 * A thread allocates from its home heap (dealt round-robin), or from the
 * next one whose lock is free when that one is busy; a heap maps a new
 * chunk only when no heap has a free span that fits.  The dirty limit and
 * the purges count the heaps' memory together.
 * Locking: each heap's lock guards it.  No system call is made under one:
 * new chunks are mapped, and purges done, with it released.
 */
#ifndef PL_SPAN_H
#define PL_SPAN_H

#include "chunk.h"
#include "common.h"
#include "os.h"

typedef enum {
  PL_SPAN_UNUSED = 0, /* descriptor not describing anything */
  PL_SPAN_FREE = 1,
  PL_SPAN_SMALL = 2,
  PL_SPAN_LARGE = 3,
  /* free, but taken out of the buckets while it is purged or unmapped with
   * the lock released: neither allocated nor coalesced meanwhile */
  PL_SPAN_BUSY = 4,
} pl_span_state_t;

/* FREE span flags: DIRTY = its pages may be resident and hold old bytes
 * (a purge candidate); ZERO = its pages are known to read as zero; GHOST =
 * some of its pages may hold ghost words (chunk.h), left by a span of
 * small blocks freed to the heap. */
#define PL_SPAN_DIRTY 1u
#define PL_SPAN_ZERO 2u
#define PL_SPAN_GHOST 4u
/* LARGE span flag: freed by the program, and held by the thread that freed
 * it until its next call into the span heap (large.c), which gives it back
 * under the same lock.  A free of it is a double free. */
#define PL_SPAN_PENDING 8u
/* SMALL span flag: every block free, and kept by its class's central list
 * past the spare rule, for the class's next refills (central.c). */
#define PL_SPAN_KEPT 16u
#define PL_SPAN_MAX_BLOCKS 512
#define PL_SPAN_BITMAP_WORDS (PL_SPAN_MAX_BLOCKS / 64)

typedef struct pl_span {
  struct pl_span *next, *prev; /* heap bucket (FREE) or central list (SMALL) */
  uintptr_t start;             /* address of the first page */
  pl_chunk_t *chunk;
  uint32_t npages;
  uint8_t state;               /* pl_span_state_t */
  uint8_t cls;                 /* SMALL: size class */
  uint8_t flags;               /* FREE: PL_SPAN_DIRTY, _ZERO, _GHOST; LARGE: _PENDING; SMALL: _KEPT */
  uint8_t listed;              /* SMALL: on its class's partial list */
  uint8_t shard;               /* SMALL: its class's shard of partial spans (central.c) */
  uint64_t free_since;         /* FREE: when it became free (ms); SMALL, KEPT: when kept */
  /* FREE: of its pages, how many may be resident: the dirty limit's
   * count.  An estimate: freed pages count whole, purged ones not at all,
   * and pages carved off the front are taken to be the dirty ones first.
   * 0 when not DIRTY; may reach 0 while DIRTY stays (then the span is
   * still purged in its turn). */
  uint32_t ndirty;
  /* SMALL spans, owned by the central lists: free + cached + live ==
   * nblocks; bit i of free_map set <=> block i is free in this span. */
  uint32_t nblocks;
  uint32_t nfree;
  /* SMALL: one past the highest block the central lists have handed to a
   * cache since the span was carved: the blocks from here on were never
   * handed out (a free of one is of a pointer pallet did not give). */
  uint32_t taken_end;
  /* SMALL: its cold page words, which read {0, 0}, so that free() of a
   * block starting in their 4 KiB takes the slow path (bit k: the span's
   * k-th page word, PL_PW_PER_PAGE a page; a class's spans are at most
   * 32 pages).  A new span's words are cold where its blocks start
   * (pl_class_inner_words has the others), and no block starting under a
   * cold word is live or cached: the central lists warm a word when they
   * hand out a block starting under it, after writing the free key into
   * every free block starting there, and cool the words of the pages
   * they purge (central.c).  So every block free in its span holds its
   * key or starts under a cold word, and a free of one is caught. */
  uint64_t cold_words;
  /* SMALL: the pages given back to the OS while all the blocks on them
   * were free in free_map (bit p: page p; the words blocks start under
   * there are cold), and the central purge pass that last took a block
   * from it (central.c). */
  uint32_t purged_pages;
  uint32_t alloc_pass;
  size_t large_size;           /* LARGE: bytes the program may use */
  uint64_t generation;         /* SMALL: which carving of these pages */
  uint64_t free_map[PL_SPAN_BITMAP_WORDS];
} pl_span_t;

/* A span of npages (1 .. 512) whose start is a multiple of align_pages
 * pages (a power of two), in state SMALL (with class cls) or LARGE, its
 * page map filled in.  Maps a new chunk when nothing fits.  NULL when the
 * OS refuses memory.  *zeroed says whether the pages are known to read as
 * zero (fresh from the OS or purged with DONTNEED).  also_free, if not
 * NULL, is a LARGE span to give back as pl_span_free would, under the
 * same lock (whatever the outcome). */
pl_span_t *pl_span_alloc(size_t npages, size_t align_pages, int state,
                         unsigned cls, bool *zeroed, pl_span_t *also_free) PL_HIDDEN;
/* Makes the page words of SMALL span s in mask (bit k: its k-th word)
 * cold ({0, 0}, so that free() of a block starting there takes the slow
 * path, which reports it: every block there is free) or warm (the
 * span's word).  Called with s's class lock held. */
void pl_span_set_cold(pl_span_t *s, uint64_t mask, bool cold) PL_HIDDEN;
/* A copy of the span covering the page of p, taken under its heap's lock
 * (its fields may change once the lock is dropped); false if p is in no
 * chunk of the heap.  For telling what a pointer that starts no block
 * points into: the page map names the span of a large or free span's
 * inner pages no longer (span.h's invariants). */
bool pl_span_find(const void *p, pl_span_t *out) PL_HIDDEN;
/* Gives a SMALL or LARGE span back to the heap, coalescing it. */
void pl_span_free(pl_span_t *s) PL_HIDDEN;
/* The same for a span whose memory has been unused since the time since
 * (pl_os_now_ms; a later time counts as now): it ages as a free span
 * from then (a kept span, central.c). */
void pl_span_free_since(pl_span_t *s, uint64_t since) PL_HIDDEN;
/* Shrinks a LARGE span in place to npages, freeing the tail. */
void pl_span_shrink(pl_span_t *s, size_t npages) PL_HIDDEN;
/* Grows a LARGE span in place to npages if the span after it is free and
 * long enough.  Returns true on success. */
bool pl_span_grow(pl_span_t *s, size_t npages) PL_HIDDEN;

/* The span covering p, read from the page map (no lock); NULL when p is not
 * in a heap chunk.  In the arena (which holds heap chunks only) that is one
 * load from the flat span array: a slot not in use reads as NULL. */
PL_INLINE pl_span_t *pl_span_of(const void *p) {
  uintptr_t off = (uintptr_t)p - pl_arena_base;
  if (PL_LIKELY(off < pl_arena_size))
    return __atomic_load_n(&pl_arena_spans[off >> PL_PAGE_SHIFT], __ATOMIC_RELAXED);
  pl_chunk_t *c = pl_chunk_lookup(p);
  if (c == NULL || c->kind != PL_CHUNK_HEAP) return NULL;
  return c->page_span[pl_chunk_page_index(p)];
}

/* Decay and purge (footprint). */
typedef struct pl_span_totals {
  size_t chunks, mapped, free_bytes, dirty_bytes, purged_bytes, small_bytes,
      large_bytes, retained_chunks, unmapped_chunks;
  size_t pending_bytes; /* of large_bytes: spans flagged PL_SPAN_PENDING */
} pl_span_totals_t;
/* Purges dirty free spans that have been free for at least age_ms (0: any),
 * largest first, until at most target_dirty bytes stay dirty; with
 * unmap_chunks also unmaps wholly free chunks (of that age) beyond the
 * retained reserve.  Returns the number of bytes given back.  Called with
 * no lock held. */
size_t pl_span_purge(uint64_t age_ms, bool unmap_chunks, size_t target_dirty) PL_HIDDEN;
/* Whether dirty memory is over what a thread exit leaves: half the base
 * limit (see pl_span_free), and the recent peak's room while threads
 * churn (pl_span_thread_start). */
bool pl_span_over_half_limit(void) PL_HIDDEN;
/* If dirty memory is over that, purges it down to that whatever its age.
 * Returns the bytes given back. */
size_t pl_span_purge_excess(void) PL_HIDDEN;
/* A thread is exiting (before its purge check): lets the heap tell thread
 * churn, whose exits then keep what the next threads will want (span.c). */
void pl_span_thread_exit(uint64_t now) PL_HIDDEN;
/* A thread is making its cache: one that starts soon after an exit tells
 * thread churn. */
void pl_span_thread_start(uint64_t now) PL_HIDDEN;
/* Bytes of dirty free spans (may be resident, hold old bytes). */
size_t pl_span_dirty_bytes(void) PL_HIDDEN;
/* Bytes of the spans in use, small-block and large, in all heaps (relaxed
 * reads, no lock). */
size_t pl_span_active_bytes(void) PL_HIDDEN;
/* Room under the dirty bound now (see pl_span_free), in bytes: the bound,
 * max(pl_span_dirty_min, active bytes >> pl_span_dirty_shift) plus the
 * recent peak's room (span.c), minus the dirty bytes of all heaps; 0 when
 * they are over it. */
size_t pl_span_dirty_room(void) PL_HIDDEN;
void pl_span_totals(pl_span_totals_t *t) PL_HIDDEN;
/* Bytes of heap chunks resident in RAM. */
size_t pl_span_resident(void) PL_HIDDEN;
/* Calls fn on every span of every heap chunk, chunk by chunk, each
 * chunk's spans in address order, under each heap's lock in turn (the
 * caller holds every central lock, so that SMALL spans' block maps are
 * stable).  fn must not call into pallet. */
void pl_span_walk(void (*fn)(const pl_chunk_t *c, const pl_span_t *s, void *arg),
                  void *arg) PL_HIDDEN;
/* Calls fn on every SMALL span, under the heaps' locks (the caller holds
 * every central lock, so that the spans' block maps are stable). */
void pl_span_foreach_small(void (*fn)(const pl_span_t *s, void *arg),
                           void *arg) PL_HIDDEN;
/* Verifies every invariant above; returns 0, or -1 after printing what is
 * broken. */
int pl_span_heap_check(void) PL_HIDDEN;

/* Settings (options.c decides them at start-up). */
#define PL_SPAN_HEAPS_MAX 16
/* Heaps in use, 1 .. PL_SPAN_HEAPS_MAX; may be raised at any time, never
 * lowered. */
extern unsigned pl_span_nheaps PL_HIDDEN;
/* The calling thread's home heap (0 .. pl_span_nheaps - 1). */
unsigned pl_span_home(void) PL_HIDDEN;
extern pl_purge_mode_t pl_span_purge_mode PL_HIDDEN;
extern size_t pl_span_retain_chunks PL_HIDDEN;
/* Dirty memory the heap keeps before it purges as frees come in (see
 * pl_span_free): max(pl_span_dirty_min, active >> pl_span_dirty_shift),
 * plus the recent peak's room (pl_span_peak_ms). */
extern size_t pl_span_dirty_min PL_HIDDEN;
extern unsigned pl_span_dirty_shift PL_HIDDEN;
/* The window of the recent peak of active pages (span.c), PALLET_DECAY_MS:
 * dirty memory up to what was freed since that peak is kept from the
 * at-once purges. */
extern uint64_t pl_span_peak_ms PL_HIDDEN;
/* Set by a higher layer (lifecycle.c): does a thread other than the
 * caller reach the heap these days?  Its calls then run the decay passes,
 * and it may take freed spans again: pl_span_free turns its at-once
 * purges into age-gated ones.  NULL: never asked (unit tests set it). */
extern bool (*pl_span_others_busy)(uint64_t now) PL_HIDDEN;
/* Set by a higher layer (lifecycle.c): gives back to the heap the wholly
 * free spans the central lists keep (central.c), before an at-once purge
 * made because small-block spans worth half the dirty bound came back:
 * the working set has shrunk, and those go with the rest.  NULL: none
 * kept (unit tests of the heap alone). */
extern void (*pl_span_release_kept)(void) PL_HIDDEN;

void pl_span_fork_prepare(void) PL_HIDDEN;
void pl_span_fork_parent(void) PL_HIDDEN;
void pl_span_fork_child(void) PL_HIDDEN;

#endif /* PL_SPAN_H */
