/*
 * central.h — the central lists: for each size class, the spans carved
 * into blocks of that class, and which of their blocks are free.
 *
 * They hand out and take back blocks only in batches (arrays of pointers);
 * they do not know that thread caches exist.  A class's transfer arrays
 * and partial spans are split in shards, one per home span heap of the
 * calling threads (central.c), so that threads on different CPUs keep
 * their blocks on spans of their own.  A batch first goes to a shard's
 * transfer array (up to 512 pointers): for blocks of 256 B to 32 KiB the
 * caller's, for the others that of the span its first block came from;
 * the next refill of that shard, or of one whose own shard is empty,
 * takes it back with one copy; only past that do blocks return to their
 * spans.  A span's free blocks are a bitmap in its out-of-band
 * descriptor, so no link of the central lists is ever stored inside user
 * memory, and a block given back to its span twice is caught there for
 * certain.  A span whose blocks are all free goes back to the span heap,
 * unless it is its shard's spare (its only listed span, of up to
 * 64 KiB, against thrashing) or the kept spans of all classes and the
 * heap's dirty memory are still within the dirty bound: then it stays
 * with its class (kept) for its next refills, until the next decay pass
 * gives it back.
 *
 * Invariant per class:  free blocks in listed and kept spans ==
 * nfree_blocks, and for every span  nfree == popcount(free_map) <=
 * nblocks; a listed span is on the partial list of its shard (s->shard);
 * a kept span is off the partial lists, with every block free.
 * Locking: one lock per class, each on its own cache line; a class lock
 * may be held while the span heap lock is taken, never the reverse.
 */
#ifndef PL_CENTRAL_H
#define PL_CENTRAL_H

#include "common.h"
#include "sizeclass.h"
#include "span.h"

/* PALLET_JUNK: called for every block of each span carved (before any of
 * them is handed out), so that every free block, fresh or freed, holds
 * what a free writes into it (canary.h).  NULL when the option is off.
 * Set once at start-up (a function of a higher floor: this one cannot
 * name it). */
extern void (*pl_central_carve_hook)(void *block, unsigned cls) PL_HIDDEN;

/* Fills out[0..n) with up to n free blocks of class cls; returns how many:
 * fewer than n when the OS refuses memory (0 when it has none at all),
 * or when more would warm more than a few cold page words (central.c). */
size_t pl_central_alloc_batch(unsigned cls, void **out, size_t n) PL_HIDDEN;
/* Whether p, a block start of class cls, was never handed out since its
 * span was carved: it lies past every block the central lists gave a
 * cache (and is free in its span).  For the reports of misuse: such a
 * block holds its free key like a freed one. */
bool pl_central_never_taken(const void *p, unsigned cls) PL_HIDDEN;
/* Takes back n blocks of class cls.  A block already free in its span is
 * reported as a double free (fatal). */
void pl_central_free_batch(unsigned cls, void *const *blocks, size_t n) PL_HIDDEN;

typedef struct pl_central_totals {
  size_t spans, blocks, free_blocks;
} pl_central_totals_t;
void pl_central_totals(unsigned cls, pl_central_totals_t *t) PL_HIDDEN;
/* Verifies the invariants of every class; 0 or -1. */
int pl_central_check(void) PL_HIDDEN;
/* Returns the blocks of class cls's transfer array to their spans (where
 * a block already free is reported as a double free). */
void pl_central_drain(unsigned cls) PL_HIDDEN;
/* Returns the transfer arrays' blocks to their spans and releases the
 * wholly free spans of every class, kept or not, to the span heap
 * (malloc_trim, every decay pass). */
void pl_central_release_spares(void) PL_HIDDEN;
/* Releases the kept spans of every class to the span heap (the heap's
 * at-once purges, span.h).  A call made while one runs returns at once. */
void pl_central_release_kept(void) PL_HIDDEN;

/* Gives back to the OS the pages of partly used spans on which every
 * block is free in its span's bitmap (blocks in caches and transfer
 * arrays count as used), for spans no refill has taken a block from in
 * the last min_passes calls (0: all).  Not under PALLET_JUNK (purged
 * pages read as zero, not as junk).  Returns the bytes given back. */
size_t pl_central_purge_idle_pages(unsigned min_passes) PL_HIDDEN;

/* Bytes of the kept spans of all classes (a relaxed read). */
size_t pl_central_kept_bytes(void) PL_HIDDEN;
/* Bytes parked in all transfer arrays (each class read under its lock). */
size_t pl_central_xfer_bytes(void) PL_HIDDEN;
/* Takes / releases every class lock, in ascending class order. */
void pl_central_lock_all(void) PL_HIDDEN;
void pl_central_unlock_all(void) PL_HIDDEN;
void pl_central_fork_prepare(void) PL_HIDDEN;
void pl_central_fork_parent(void) PL_HIDDEN;
void pl_central_fork_child(void) PL_HIDDEN;

#endif /* PL_CENTRAL_H */
