/*
 * stats.c — statistics from the heap's structures; text and JSON reports
 * formatted without allocating.
 */
#include "stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "central.h"
#include "error.h"
#include "large.h"
#include "meta.h"
#include "sizeclass.h"
#include "span.h"
#include "tcache.h"

/* Pages of a SMALL span that hold at least one block not free in it. */
static void count_active(const pl_span_t *s, void *arg) {
  size_t *active = arg;
  size_t size = pl_class_info[s->cls].size;
  uint64_t pages[PL_CHUNK_PAGES / 64] = {0};
  size_t npages = 0;
  for (size_t i = 0; i < s->nblocks; i++) {
    if (s->free_map[i / 64] & ((uint64_t)1 << (i % 64))) continue;
    size_t first = (i * size) >> PL_PAGE_SHIFT;
    size_t last = ((i + 1) * size - 1) >> PL_PAGE_SHIFT;
    for (size_t p = first; p <= last; p++) {
      uint64_t bit = (uint64_t)1 << (p % 64);
      if (!(pages[p / 64] & bit)) {
        pages[p / 64] |= bit;
        npages++;
      }
    }
  }
  *active += npages * PL_PAGE_SIZE;
}

void pl_stats_collect(pallet_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->nclasses = PL_NCLASSES + 1;
  for (unsigned c = 1; c <= PL_NCLASSES; c++) {
    pl_central_totals_t ct;
    pl_central_totals(c, &ct);
    size_t cached = pl_tcache_count_class(c);
    size_t size = pl_class_info[c].size;
    pallet_class_stats_t *cs = &st->classes[c];
    cs->size = size;
    cs->spans = ct.spans;
    cs->blocks = ct.blocks;
    cs->central = ct.free_blocks;
    cs->cached = cached;
    size_t not_live = ct.free_blocks + cached;
    cs->live = ct.blocks > not_live ? ct.blocks - not_live : 0;
    st->allocated += cs->live * size;
    st->tcache += cached * size;
    st->central += ct.free_blocks * size;
  }
  size_t small_active = 0;
  pl_central_lock_all();
  pl_span_foreach_small(count_active, &small_active);
  pl_central_unlock_all();

  pl_span_totals_t t;
  pl_span_totals(&t);
  pl_huge_totals_t h;
  pl_huge_totals(&h);
  /* A large block parked by the thread that freed it (large.h) is free:
   * it counts with the thread caches, not as allocated. */
  st->large = t.large_bytes - t.pending_bytes;
  st->tcache += t.pending_bytes;
  st->huge = h.usable;
  st->allocated += st->large + h.usable;
  st->active = small_active + t.large_bytes + h.usable;
  st->mapped = t.mapped + h.mapped + h.cached;
  st->free_spans = t.dirty_bytes + h.cached;
  st->purged = t.purged_bytes;
  st->chunks = t.chunks;
  st->metadata = pl_meta_mapped();
  st->threads = pl_tcache_live();
  st->resident = pl_span_resident() + pl_huge_resident();
}

/* A bounded appender over snprintf (which does not allocate for these
 * conversions). */
typedef struct out_buf {
  char *buf;
  size_t cap, len;
} out_buf_t;

__attribute__((format(printf, 2, 3))) static void put(out_buf_t *o, const char *fmt, ...) {
  if (o->len + 1 >= o->cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
  va_end(ap);
  if (n > 0) o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

size_t pl_stats_format(const pallet_stats_t *st, int format, char *buf, size_t cap) {
  out_buf_t o = {buf, cap, 0};
  if (cap) buf[0] = 0;
  static const char *names[] = {"allocated", "active", "resident", "mapped",
                                "metadata", "tcache", "central", "free_spans",
                                "purged", "large", "huge"};
  size_t vals[] = {st->allocated, st->active, st->resident, st->mapped,
                   st->metadata, st->tcache, st->central, st->free_spans,
                   st->purged, st->large, st->huge};
  if (format == PALLET_STATS_JSON) {
    put(&o, "{");
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
      put(&o, "\"%s\": %zu, ", names[i], vals[i]);
    put(&o, "\"chunks\": %zu, \"threads\": %zu, \"classes\": [", st->chunks, st->threads);
    bool first = true;
    for (size_t c = 1; c < st->nclasses; c++) {
      const pallet_class_stats_t *cs = &st->classes[c];
      if (cs->spans == 0 && cs->cached == 0) continue;
      put(&o, "%s{\"size\": %zu, \"spans\": %zu, \"blocks\": %zu, \"live\": %zu, "
              "\"cached\": %zu, \"central\": %zu}",
          first ? "" : ", ", cs->size, cs->spans, cs->blocks, cs->live, cs->cached,
          cs->central);
      first = false;
    }
    put(&o, "]}\n");
    return o.len;
  }
  put(&o, "pallet statistics\n");
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    put(&o, "  %-11s %14zu bytes\n", names[i], vals[i]);
  put(&o, "  %-11s %14zu\n  %-11s %14zu\n", "chunks", st->chunks, "threads", st->threads);
  put(&o, "  %8s %8s %10s %10s %10s %10s\n", "class", "spans", "blocks", "live",
      "cached", "central");
  for (size_t c = 1; c < st->nclasses; c++) {
    const pallet_class_stats_t *cs = &st->classes[c];
    if (cs->spans == 0 && cs->cached == 0) continue;
    put(&o, "  %8zu %8zu %10zu %10zu %10zu %10zu\n", cs->size, cs->spans, cs->blocks,
        cs->live, cs->cached, cs->central);
  }
  return o.len;
}

void pl_stats_write_fd(int fd, int format) {
  pallet_stats_t st;
  char buf[12288];
  pl_stats_collect(&st);
  size_t n = pl_stats_format(&st, format, buf, sizeof buf);
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(fd, buf + off, n - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
}
