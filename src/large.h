/*
 * large.h — blocks above the largest size class.
 *
 * Large blocks (up to PL_LARGE_MAX, or more when an alignment allows) are
 * whole LARGE spans of the span heap: they split and coalesce with their
 * neighbours and grow or shrink in place when they can.  Huge blocks get a
 * mapping of their own, aligned to a 4 MiB slot and entered in the chunk
 * map; they are unmapped when freed, leaving a tombstone in the map so that
 * a second free of the same address is reported as a double free.
 *
 * Locking: a span heap's lock for large blocks (span.h); a registry lock
 * for the list of huge blocks (taken after a heap lock, never around a
 * system call).
 */
#ifndef PL_LARGE_H
#define PL_LARGE_H

#include "chunk.h"
#include "common.h"
#include "span.h"

/* A block of at least n bytes aligned to align (a power of two >= 16):
 * a large span when it fits in one, else a huge mapping.  zero: the block
 * must read as zero.  NULL when the OS refuses memory.
 * pending: the calling thread's slot for the large span it freed last
 * (threads without a cache share one), or NULL for none.  A large free
 * parks the span there (flagged PL_SPAN_PENDING) and gives back the one
 * parked before; the next large allocation gives the parked one back
 * under the lock it takes anyway.  So a thread that frees and allocates
 * large blocks in turn takes a span heap's lock once for the two (if the
 * parked span is of the heap it locks; else the two are locked apart).  A
 * decay pass takes the parked span of a thread idle for the decay time
 * (the slot is only swapped atomically), and the shared one every time. */
void *pl_large_alloc(size_t n, size_t align, bool zero, pl_span_t **pending) PL_HIDDEN;
void pl_large_free(pl_span_t *s, pl_span_t **pending) PL_HIDDEN;
/* Gives back the span parked in *pending, if any. */
void pl_large_flush_pending(pl_span_t **pending) PL_HIDDEN;
/* Resizes a large block in place to hold n bytes; true on success. */
bool pl_large_resize(pl_span_t *s, size_t n) PL_HIDDEN;

void *pl_huge_alloc(size_t n, size_t align, bool zero) PL_HIDDEN;
void pl_huge_free(pl_chunk_t *rec) PL_HIDDEN;
bool pl_huge_resize(pl_chunk_t *rec, size_t n) PL_HIDDEN;

typedef struct pl_huge_totals {
  size_t count, mapped, usable; /* live huge blocks */
  size_t cached;                /* freed mappings kept for reuse */
} pl_huge_totals_t;
/* Unmaps cached huge mappings unused for at least age_ms (0: all).
 * Returns the bytes unmapped. */
size_t pl_huge_cache_purge(uint64_t age_ms) PL_HIDDEN;
/* The most bytes of freed huge mappings kept for reuse. */
extern size_t pl_huge_cache_max PL_HIDDEN;
void pl_huge_totals(pl_huge_totals_t *t) PL_HIDDEN;
size_t pl_huge_resident(void) PL_HIDDEN;
/* Decay: purges free spans and unmaps cached huge mappings unused for at
 * least age_ms (0: everything, as malloc_trim does).  Returns bytes given
 * back. */
size_t pl_large_purge(uint64_t age_ms) PL_HIDDEN;

void pl_huge_fork_prepare(void) PL_HIDDEN;
void pl_huge_fork_parent(void) PL_HIDDEN;
void pl_huge_fork_child(void) PL_HIDDEN;

#endif /* PL_LARGE_H */
