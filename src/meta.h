/*
 * meta.h — pallet's own metadata memory: span descriptors, chunk records,
 * page-map leaves and thread caches.  It lives in mappings of its own, never
 * next to user blocks, so an overflow of a user block cannot reach it.
 * Memory from here is zeroed and never returned; each kind of record keeps
 * its own free list for reuse.  One lock (the last in the lock order).
 */
#ifndef PL_META_H
#define PL_META_H

#include "common.h"

/* size bytes aligned to align (a power of two <= 4096), zeroed; NULL when
 * the OS refuses memory. */
void *pl_meta_alloc(size_t size, size_t align) PL_HIDDEN;
/* Bytes mapped for metadata so far. */
size_t pl_meta_mapped(void) PL_HIDDEN;
void pl_meta_fork_prepare(void) PL_HIDDEN;
void pl_meta_fork_parent(void) PL_HIDDEN;
void pl_meta_fork_child(void) PL_HIDDEN;

#endif /* PL_META_H */
