/*
 * heapmap.h — a picture of the heap: an SVG with one row per heap chunk,
 * each span a rectangle over its pages, coloured by state (small spans
 * shaded by occupancy, large, free dirty, free purged), with a legend, the
 * statistics totals and the huge blocks.  Backs pallet_heap_map().
 */
#ifndef PL_HEAPMAP_H
#define PL_HEAPMAP_H

#include <stdio.h>

#include "common.h"

/* Most chunks drawn span by span; the others are summed in one line. */
#define PL_HEAPMAP_MAX_CHUNKS 64

/* Writes the SVG to out.  Takes a snapshot of the span heaps under every
 * central lock and each heap's lock into memory of its own (mapped for the
 * purpose), releases the locks, then writes with stdio: nothing allocates
 * or writes while a lock is held, so out may be backed by malloc.
 * Returns 0, or -1 with errno set (EINVAL: out is NULL; ENOMEM: no memory
 * for the snapshot; else the error of the failed write). */
int pl_heap_map_write(FILE *out) PL_HIDDEN;

#endif /* PL_HEAPMAP_H */
