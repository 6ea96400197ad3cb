/*
 * stats.h — statistics, computed on demand from the heap's own structures
 * (span bitmaps, central counts, cache counts, span and huge totals), so
 * the fast paths keep no counters at all and the figures are exact.
 */
#ifndef PL_STATS_H
#define PL_STATS_H

#include "common.h"

#include "pallet.h"

/* Fills *out (see pallet.h). */
void pl_stats_collect(pallet_stats_t *out) PL_HIDDEN;
/* Writes the report (format: PALLET_STATS_TEXT or _JSON) to fd with
 * write(2) only. */
void pl_stats_write_fd(int fd, int format) PL_HIDDEN;
/* Formats the report into buf (NUL-terminated, truncated to cap); returns
 * its length. */
size_t pl_stats_format(const pallet_stats_t *st, int format, char *buf,
                       size_t cap) PL_HIDDEN;

#endif /* PL_STATS_H */
