/*
 * heapmap.c — pallet_heap_map(): the heap drawn as an SVG.
 *
 * Two phases, so that nothing allocates or writes while pallet's locks are
 * held (stdio may call malloc, which is pallet itself when it overrides):
 *   1. snapshot: with every central lock held (so SMALL spans' free counts
 *      are stable), pl_span_walk copies each span's facts into a snapshot
 *      mapped with pl_os_map beforehand — the first PL_HEAPMAP_MAX_CHUNKS
 *      chunks span by span, the rest only summed;
 *   2. drawing: with no lock held, the snapshot becomes SVG through stdio.
 * The totals (pl_stats_collect) and huge blocks (pl_huge_totals) are read
 * just before the snapshot, each under its own locks: in a program whose
 * other threads are busy, the figures may differ slightly from the spans.
 *
 * Picture: one row per chunk (512 pages of 8 KiB, 2 px per page), one
 * rectangle per span with a <title> tooltip.  Span rectangles are the only
 * elements written as <rect class=...>...</rect>; every other rectangle
 * (legend, background) is self-closed and starts with another attribute,
 * so a reader (test/unit_heapmap.c) can count the spans drawn.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "central.h"
#include "chunk.h"
#include "common.h"
#include "heapmap.h"
#include "large.h"
#include "os.h"
#include "pallet.h"
#include "sizeclass.h"
#include "span.h"
#include "stats.h"

/* ---- phase 1: the snapshot ----------------------------------------- */

/* What a span looks like in the picture. */
enum { K_SMALL, K_LARGE, K_DIRTY, K_CLEAN, K_BUSY, K_COUNT };

typedef struct hm_span {
  uint32_t large_size;   /* LARGE: usable bytes */
  uint16_t page, npages; /* first page in its chunk, length */
  uint16_t nblocks, nfree;
  uint8_t kind, cls;
} hm_span_t;

typedef struct hm_chunk {
  uintptr_t base;
  uint32_t first, nspans; /* its spans in hm_snap_t.spans */
} hm_chunk_t;

typedef struct hm_sum {
  size_t pages[K_COUNT];
  size_t spans[K_COUNT];
  size_t small_used, small_capacity; /* bytes of blocks: not free / all */
} hm_sum_t;

typedef struct hm_snap {
  const pl_chunk_t *cur; /* chunk of the previous span */
  bool drawing;          /* cur is one of chunks[] */
  size_t nchunks;        /* every heap chunk */
  size_t ndrawn;         /* entries of chunks[] */
  size_t nspans;         /* entries of spans[] */
  hm_sum_t all, rest;    /* every chunk; the chunks not drawn */
  hm_chunk_t chunks[PL_HEAPMAP_MAX_CHUNKS];
  hm_span_t spans[PL_HEAPMAP_MAX_CHUNKS * PL_CHUNK_PAGES];
} hm_snap_t;

static unsigned span_kind(const pl_span_t *s) {
  switch (s->state) {
  case PL_SPAN_SMALL: return K_SMALL;
  case PL_SPAN_LARGE: return K_LARGE;
  case PL_SPAN_FREE: return (s->flags & PL_SPAN_DIRTY) ? K_DIRTY : K_CLEAN;
  default: return K_BUSY;
  }
}

static void sum_add(hm_sum_t *t, unsigned kind, const pl_span_t *s) {
  t->pages[kind] += s->npages;
  t->spans[kind]++;
  if (kind == K_SMALL) {
    size_t size = pl_class_info[s->cls].size;
    size_t used = s->nblocks > s->nfree ? s->nblocks - s->nfree : 0;
    t->small_used += used * size;
    t->small_capacity += (size_t)s->nblocks * size;
  }
}

/* pl_span_walk's callback, under the heap lock and every central lock:
 * only copies into the snapshot (no allocation, no call into pallet). */
static void snap_span(const pl_chunk_t *c, const pl_span_t *s, void *arg) {
  hm_snap_t *m = arg;
  if (c != m->cur) {
    m->cur = c;
    m->nchunks++;
    m->drawing = m->ndrawn < PL_HEAPMAP_MAX_CHUNKS;
    if (m->drawing) {
      hm_chunk_t *hc = &m->chunks[m->ndrawn++];
      hc->base = c->base;
      hc->first = (uint32_t)m->nspans;
      hc->nspans = 0;
    }
  }
  unsigned kind = span_kind(s);
  sum_add(&m->all, kind, s);
  if (!m->drawing) {
    sum_add(&m->rest, kind, s);
    return;
  }
  if (m->nspans >= sizeof m->spans / sizeof m->spans[0]) return; /* cannot happen */
  hm_span_t *r = &m->spans[m->nspans++];
  m->chunks[m->ndrawn - 1].nspans++;
  r->page = (uint16_t)((s->start - c->base) >> PL_PAGE_SHIFT);
  r->npages = (uint16_t)s->npages;
  r->kind = (uint8_t)kind;
  r->cls = s->state == PL_SPAN_SMALL ? s->cls : 0;
  r->nblocks = s->state == PL_SPAN_SMALL ? (uint16_t)s->nblocks : 0;
  r->nfree = s->state == PL_SPAN_SMALL ? (uint16_t)s->nfree : 0;
  r->large_size = s->state == PL_SPAN_LARGE ? (uint32_t)s->large_size : 0;
}

/* Rows in address order, whatever the order of the chunk list. */
static void sort_chunks(hm_snap_t *m) {
  for (size_t i = 1; i < m->ndrawn; i++) {
    hm_chunk_t x = m->chunks[i];
    size_t j = i;
    for (; j > 0 && m->chunks[j - 1].base > x.base; j--) m->chunks[j] = m->chunks[j - 1];
    m->chunks[j] = x;
  }
}

/* ---- phase 2: the drawing ------------------------------------------- */

/* Geometry, in pixels. */
#define PX_PAGE 2u                          /* width of one page */
#define LEFT 150u                           /* chunk labels */
#define MARGIN 10u
#define NPAGES ((unsigned)PL_CHUNK_PAGES)
#define WIDTH (LEFT + NPAGES * PX_PAGE + 2 * MARGIN)
#define ROW 20u                             /* row pitch */
#define BAR 16u                             /* row height */
#define ROWS_TOP 150u                       /* first row */

typedef struct hm_out {
  FILE *f;
  int err; /* errno of the first failed write, 0 if none */
} hm_out_t;

__attribute__((format(printf, 2, 3))) static void put(hm_out_t *o, const char *fmt, ...) {
  if (o->err) return;
  va_list ap;
  va_start(ap, fmt);
  errno = 0;
  int n = vfprintf(o->f, fmt, ap);
  va_end(ap);
  if (n < 0) o->err = errno ? errno : EIO;
}

/* n bytes for people: "512 B", "40.0 KiB", "12.5 MiB", "1.2 GiB". */
static const char *human(char *buf, size_t cap, size_t n) {
  if (n < 1024)
    snprintf(buf, cap, "%zu B", n);
  else if (n < ((size_t)1 << 20))
    snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
  else if (n < ((size_t)1 << 30))
    snprintf(buf, cap, "%.1f MiB", (double)n / 1048576.0);
  else
    snprintf(buf, cap, "%.2f GiB", (double)n / 1073741824.0);
  return buf;
}

/* Occupancy shade 0..10 of a small span (tenths of its blocks not free). */
static unsigned shade(const hm_span_t *r) {
  if (r->nblocks == 0) return 0;
  unsigned used = r->nblocks > r->nfree ? (unsigned)(r->nblocks - r->nfree) : 0;
  return (used * 10u + r->nblocks / 2u) / r->nblocks;
}

/* Colours: small spans from pale (0% used) to dark blue (100%). */
static const unsigned shade_lo[3] = {0xde, 0xeb, 0xf7}, shade_hi[3] = {0x08, 0x30, 0x6b};
static const char *const kind_class[K_COUNT] = {"", "L", "D", "C", "B"};
static const char *const kind_fill[K_COUNT] = {"", "#f28e2b", "#e8706e", "#e4e4e4", "#9a9a9a"};
static const char *const kind_name[K_COUNT] = {"small", "large", "free, dirty",
                                               "free, purged", "being purged"};

static void write_style(hm_out_t *o) {
  put(o, "<style>\n");
  for (unsigned i = 0; i <= 10; i++) {
    unsigned rgb[3];
    for (int k = 0; k < 3; k++)
      rgb[k] = (shade_lo[k] * (10u - i) + shade_hi[k] * i + 5u) / 10u;
    put(o, ".o%u{fill:#%02x%02x%02x}", i, rgb[0], rgb[1], rgb[2]);
  }
  put(o, "\n");
  for (unsigned k = K_LARGE; k < K_COUNT; k++)
    put(o, ".%s{fill:%s}", kind_class[k], kind_fill[k]);
  put(o, "\ntext{fill:#222}.h{font-size:16px;font-weight:bold}.m{fill:#666}"
         ".ax{stroke:#888;stroke-width:1}\n</style>\n");
}

static void write_span(hm_out_t *o, const hm_span_t *r) {
  char b1[32];
  unsigned last = r->page + r->npages - 1u;
  unsigned w = r->npages * PX_PAGE - 1u; /* + 0.5: a half-pixel gap */
  if (r->kind == K_SMALL)
    put(o, "<rect class=\"o%u\"", shade(r));
  else
    put(o, "<rect class=\"%s\"", kind_class[r->kind]);
  put(o, " x=\"%u\" width=\"%u.5\" height=\"%u\"><title>", r->page * PX_PAGE, w, BAR);
  if (r->npages == 1)
    put(o, "page %u", r->page);
  else
    put(o, "pages %u-%u", r->page, last);
  size_t bytes = (size_t)r->npages << PL_PAGE_SHIFT;
  switch (r->kind) {
  case K_SMALL: {
    unsigned used = r->nblocks > r->nfree ? (unsigned)(r->nblocks - r->nfree) : 0;
    put(o, ": class %u B, %u blocks, %u free, %u%% used", pl_class_info[r->cls].size,
        r->nblocks, r->nfree, r->nblocks ? used * 100u / r->nblocks : 0u);
    break;
  }
  case K_LARGE:
    put(o, ": large, %s, %u B usable", human(b1, sizeof b1, bytes), r->large_size);
    break;
  default:
    put(o, ": %s, %s", kind_name[r->kind], human(b1, sizeof b1, bytes));
    break;
  }
  put(o, "</title></rect>\n");
}

/* One legend entry: a swatch and its text, at x; returns the next x. */
static unsigned legend_item(hm_out_t *o, unsigned x, unsigned y, unsigned kind,
                            const hm_sum_t *t) {
  char b1[32];
  put(o, "<rect x=\"%u\" y=\"%u\" width=\"14\" height=\"14\" class=\"%s\"/>", x, y,
      kind_class[kind]);
  put(o, "<text x=\"%u\" y=\"%u\">%s: %s in %zu span%s</text>\n", x + 20u, y + 12u,
      kind_name[kind], human(b1, sizeof b1, t->pages[kind] << PL_PAGE_SHIFT), t->spans[kind],
      t->spans[kind] == 1 ? "" : "s");
  return x + 230u;
}

static void write_svg(hm_out_t *o, const hm_snap_t *m, const pallet_stats_t *st,
                      const pl_huge_totals_t *h) {
  char b1[32], b2[32], b3[32], b4[32];
  size_t more = m->nchunks - m->ndrawn;
  unsigned rows_end = ROWS_TOP + (unsigned)(m->ndrawn ? m->ndrawn : 1) * ROW;
  unsigned height = rows_end + (more ? ROW : 0u) + 64u;

  put(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
         "viewBox=\"0 0 %u %u\" font-family=\"sans-serif\" font-size=\"12\">\n",
      WIDTH, height, WIDTH, height);
  write_style(o);
  put(o, "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"#fff\"/>\n", WIDTH, height);

  /* Header: the totals of pallet_stats_get, exact bytes in parentheses. */
  put(o, "<text class=\"h\" x=\"%u\" y=\"22\">pallet heap map</text>\n", MARGIN);
  put(o, "<text id=\"totals\" x=\"%u\" y=\"42\">allocated %s (%zu B), active %s (%zu B), "
         "resident %s (%zu B), mapped %s (%zu B)</text>\n",
      MARGIN, human(b1, sizeof b1, st->allocated), st->allocated,
      human(b2, sizeof b2, st->active), st->active, human(b3, sizeof b3, st->resident),
      st->resident, human(b4, sizeof b4, st->mapped), st->mapped);
  put(o, "<text class=\"m\" x=\"%u\" y=\"60\">%zu heap chunk%s of 4 MiB (%zu drawn, 2 px "
         "per 8 KiB page), metadata %s, %zu thread cache%s; hover a span for details</text>\n",
      MARGIN, m->nchunks, m->nchunks == 1 ? "" : "s", m->ndrawn,
      human(b1, sizeof b1, st->metadata), st->threads, st->threads == 1 ? "" : "s");

  /* Legend. */
  put(o, "<g id=\"legend\">\n");
  put(o, "<text x=\"%u\" y=\"88\">small spans, shaded by blocks not free:</text>\n", MARGIN);
  for (unsigned i = 0; i <= 10; i++)
    put(o, "<rect x=\"%u\" y=\"76\" width=\"14\" height=\"14\" class=\"o%u\"/>",
        MARGIN + 276u + i * 16u, i);
  put(o, "\n<text x=\"%u\" y=\"88\">0%%</text><text x=\"%u\" y=\"88\">100%%</text>\n",
      MARGIN + 252u, MARGIN + 276u + 11u * 16u + 4u);
  size_t sp = m->all.pages[K_SMALL] << PL_PAGE_SHIFT;
  put(o, "<text x=\"%u\" y=\"88\">%s in %zu spans, %s of blocks in use (%zu%%)</text>\n",
      MARGIN + 520u, human(b1, sizeof b1, sp), m->all.spans[K_SMALL],
      human(b2, sizeof b2, m->all.small_used),
      m->all.small_capacity ? m->all.small_used * 100u / m->all.small_capacity : (size_t)0);
  unsigned x = MARGIN;
  for (unsigned k = K_LARGE; k < K_COUNT; k++) x = legend_item(o, x, 98u, k, &m->all);
  put(o, "</g>\n");

  /* Scale above the rows: 0 .. 4 MiB of the chunk. */
  for (unsigned i = 0; i <= 4; i++) {
    unsigned ax = LEFT + MARGIN + i * (NPAGES / 4u) * PX_PAGE;
    put(o, "<line class=\"ax\" x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\"/>", ax, ROWS_TOP - 8u, ax,
        ROWS_TOP - 2u);
    put(o, "<text class=\"m\" x=\"%u\" y=\"%u\" text-anchor=\"%s\">%u MiB</text>\n",
        ax, ROWS_TOP - 11u, i == 0 ? "start" : i == 4 ? "end" : "middle", i);
  }

  /* The chunks. */
  put(o, "<g id=\"chunks\">\n");
  if (m->nchunks == 0)
    put(o, "<text class=\"m\" x=\"%u\" y=\"%u\">no heap chunk mapped yet</text>\n", MARGIN,
        ROWS_TOP + 12u);
  for (size_t i = 0; i < m->ndrawn; i++) {
    const hm_chunk_t *hc = &m->chunks[i];
    unsigned y = ROWS_TOP + (unsigned)i * ROW;
    const hm_span_t *first = &m->spans[hc->first];
    bool idle = hc->nspans == 1 && (first->kind == K_DIRTY || first->kind == K_CLEAN);
    put(o, "<text x=\"%u\" y=\"%u\"%s>0x%" PRIxPTR "%s</text>\n", MARGIN, y + 12u,
        idle ? " class=\"m\"" : "", hc->base, idle ? " (all free)" : "");
    put(o, "<g transform=\"translate(%u,%u)\">\n", LEFT + MARGIN, y);
    for (uint32_t j = 0; j < hc->nspans; j++) write_span(o, &m->spans[hc->first + j]);
    put(o, "</g>\n");
  }
  put(o, "</g>\n");

  unsigned y = rows_end + 12u;
  if (more) {
    const hm_sum_t *r = &m->rest;
    put(o, "<text id=\"more\" x=\"%u\" y=\"%u\">... and %zu more chunk%s not drawn: small %s, "
           "large %s, free dirty %s, free purged %s</text>\n",
        MARGIN, y, more, more == 1 ? "" : "s",
        human(b1, sizeof b1, r->pages[K_SMALL] << PL_PAGE_SHIFT),
        human(b2, sizeof b2, r->pages[K_LARGE] << PL_PAGE_SHIFT),
        human(b3, sizeof b3, r->pages[K_DIRTY] << PL_PAGE_SHIFT),
        human(b4, sizeof b4, (r->pages[K_CLEAN] + r->pages[K_BUSY]) << PL_PAGE_SHIFT));
    y += ROW;
  }

  /* Huge blocks: each in a mapping of its own, outside the chunks. */
  put(o, "<text class=\"h\" x=\"%u\" y=\"%u\">huge blocks</text>\n", MARGIN, y + 8u);
  put(o, "<text id=\"huge\" x=\"%u\" y=\"%u\">%zu live huge block%s: %s usable (%zu B), "
         "%s mapped; %s of freed huge mappings cached for reuse</text>\n",
      MARGIN, y + 28u, h->count, h->count == 1 ? "" : "s", human(b1, sizeof b1, h->usable),
      h->usable, human(b2, sizeof b2, h->mapped), human(b3, sizeof b3, h->cached));
  put(o, "</svg>\n");
}

/* ---- entry ------------------------------------------------------------ */

int pl_heap_map_write(FILE *out) {
  if (out == NULL) {
    errno = EINVAL;
    return -1;
  }
  size_t ps = pl_os_page_size();
  size_t size = (sizeof(hm_snap_t) + ps - 1) & ~(ps - 1);
  hm_snap_t *m = pl_os_map(size, ps); /* zeroed */
  if (m == NULL) {
    errno = ENOMEM;
    return -1;
  }
  pallet_stats_t st;
  pl_stats_collect(&st);
  pl_huge_totals_t h;
  pl_huge_totals(&h);

  pl_central_lock_all();
  pl_span_walk(snap_span, m);
  pl_central_unlock_all();

  sort_chunks(m);
  hm_out_t o = {out, 0};
  write_svg(&o, m, &st, &h);
  if (!o.err && fflush(out) != 0) o.err = errno ? errno : EIO;
  if (!o.err && ferror(out)) o.err = EIO;
  pl_os_unmap(m, size);
  if (o.err) {
    errno = o.err;
    return -1;
  }
  return 0;
}
