/*
 * span.c — the coalescing span heaps.  See span.h for the invariants.
 *
 * Descriptors come from a pool refilled from metadata before a heap's lock
 * is taken, so that a split never has to map memory under the lock.
 */
#include "span.h"

#include <string.h>

#include "error.h"
#include "lock.h"
#include "meta.h"
#include "sizeclass.h"

#define NBUCKETS (PL_CHUNK_PAGES + 1)
#define BUCKET_WORDS ((NBUCKETS + 63) / 64)
#define DESC_BATCH 64
#define DESC_LOW 4

pl_purge_mode_t pl_span_purge_mode = PL_PURGE_DONTNEED;
size_t pl_span_retain_chunks = 1;
size_t pl_span_dirty_min = (size_t)16 << 20;
unsigned pl_span_dirty_shift = 4;
bool (*pl_span_others_busy)(uint64_t now);
void (*pl_span_release_kept)(void);
unsigned pl_span_nheaps = 1;

/* One span heap: its chunks, their free spans, its descriptor pool. */
typedef struct heap {
  pl_lock_t lock;
  /* The descriptor pool: a list of descriptors given back, then the
   * never-used end of the last batch mapped, desc_fresh[0 .. desc_nfresh)
   * (taken in order, so that a batch's pages are touched only as its
   * descriptors come into use); desc_nfree counts both. */
  pl_span_t *desc_free;
  pl_span_t *desc_fresh;
  size_t desc_nfresh;
  size_t desc_nfree;
  pl_chunk_t *chunk_list; /* every chunk of this heap */
  size_t nchunks; /* written under the lock, read by any thread */
  size_t unmapped_chunks;
  /* The ndirty pages of the free spans in the buckets, and pages of SMALL
   * and LARGE spans; written under the lock, read by any thread (the
   * dirty limit is the sum over the heaps). */
  size_t dirty_pages;
  size_t active_pages;
  /* The other heaps' dirty and active pages, summed at most once a
   * millisecond (give_back_locked): summing them at every free, four
   * heaps' lines read under a lock, took 4 % of bench-buffers' time. */
  uint64_t others_ms;
  size_t others_dirty, others_active;
  uint64_t bucket_map[BUCKET_WORDS];
  pl_span_t *bucket[NBUCKETS];
} PL_ALIGNED(PL_CACHELINE) heap_t;

static heap_t heaps[PL_SPAN_HEAPS_MAX];

PL_INLINE unsigned nheaps(void) { return __atomic_load_n(&pl_span_nheaps, __ATOMIC_RELAXED); }
PL_INLINE heap_t *heap_of_chunk(const pl_chunk_t *c) {
  return &heaps[__atomic_load_n(&c->heap, __ATOMIC_RELAXED)];
}
PL_INLINE heap_t *heap_of(const pl_span_t *s) { return heap_of_chunk(s->chunk); }

/* Each thread has a home heap, dealt round-robin at its first call; 0 in
 * this byte means none yet, n the (n-1)-th of a count that wraps at 240
 * (a multiple of every heap count up to 6 and of 8, 10, 12, 15, 16). */
static __thread uint8_t home_plus1 __attribute__((tls_model(PL_TLS_MODEL)));
static unsigned next_home;

static unsigned home_heap(unsigned nh) {
  unsigned h = home_plus1;
  if (PL_UNLIKELY(h == 0)) {
    h = __atomic_fetch_add(&next_home, 1, __ATOMIC_RELAXED) % 240 + 1;
    home_plus1 = (uint8_t)h;
  }
  return (h - 1) % nh;
}

unsigned pl_span_home(void) { return home_heap(nheaps()); }

/* Adds pages to, or takes them from, one of a heap's page counts (its
 * lock held; other threads read the counts without it). */
PL_INLINE void add_pages(size_t *count, size_t pages, bool add) {
  __atomic_store_n(count, add ? *count + pages : *count - pages, __ATOMIC_RELAXED);
}
/* The dirty and active pages of all the heaps, summed in one pass
 * without their locks. */
typedef struct page_sums {
  size_t dirty, active;
} page_sums_t;
static page_sums_t all_pages(void) {
  page_sums_t t = {0, 0};
  for (unsigned i = 0, nh = nheaps(); i < nh; i++) {
    t.dirty += __atomic_load_n(&heaps[i].dirty_pages, __ATOMIC_RELAXED);
    t.active += __atomic_load_n(&heaps[i].active_pages, __ATOMIC_RELAXED);
  }
  return t;
}

/* ---- descriptors ---------------------------------------------------- */

/* Makes sure at least DESC_LOW descriptors are pooled.  Called without the
 * heap lock; may map metadata. */
static bool desc_reserve(heap_t *h) {
  if (__atomic_load_n(&h->desc_nfree, __ATOMIC_RELAXED) >= DESC_LOW) return true;
  pl_span_t *batch = pl_meta_alloc(DESC_BATCH * sizeof(pl_span_t), PL_CACHELINE);
  if (batch == NULL) return false;
  pl_lock(&h->lock);
  /* What is left of the last batch goes on the list (a few at most: the
   * pool was low), and the new batch becomes the fresh end. */
  for (; h->desc_nfresh != 0; h->desc_nfresh--, h->desc_fresh++) {
    h->desc_fresh->next = h->desc_free;
    h->desc_free = h->desc_fresh;
  }
  h->desc_fresh = batch;
  h->desc_nfresh = DESC_BATCH;
  __atomic_store_n(&h->desc_nfree, h->desc_nfree + DESC_BATCH, __ATOMIC_RELAXED);
  pl_unlock(&h->lock);
  return true;
}

/* Takes heap h's lock with at least n descriptors pooled (other threads
 * may take the reserved ones between desc_reserve and the lock, so the
 * pool is looked at under it).  false, unlocked, when out of memory. */
static bool lock_with_descs(heap_t *h, size_t n) {
  for (;;) {
    if (!desc_reserve(h)) return false;
    pl_lock(&h->lock);
    if (h->desc_nfree >= n) return true;
    pl_unlock(&h->lock);
  }
}

/* For an allocation: some heap locked with at least n descriptors
 * pooled, or NULL (none locked) when out of memory.  The calling
 * thread's home heap if it is free, else the next free one; if all are
 * busy, it waits for its home heap.  Another heap whose descriptor pool
 * runs low is passed over by the try-locks rather than refilled first:
 * refilling a pool takes its heap's lock unconditionally, the very wait
 * the try-locks are there to avoid. */
static heap_t *lock_for_alloc(size_t n) {
  unsigned nh = nheaps(), home = home_heap(nh);
  for (unsigned i = 0; nh > 1 && i < nh; i++) {
    heap_t *h = &heaps[(home + i) % nh];
    if (i == 0) {
      if (!desc_reserve(h)) return NULL;
    } else if (__atomic_load_n(&h->desc_nfree, __ATOMIC_RELAXED) < DESC_LOW) {
      continue;
    }
    if (pl_trylock(&h->lock)) {
      if (h->desc_nfree >= n) return h;
      pl_unlock(&h->lock);
    }
  }
  heap_t *h = &heaps[home];
  return lock_with_descs(h, n) ? h : NULL;
}

static pl_span_t *desc_take(heap_t *h) {
  pl_span_t *s = h->desc_free;
  if (s != NULL) {
    h->desc_free = s->next;
    memset(s, 0, sizeof *s);
  } else {
    /* A fresh one: still zero, as metadata comes. */
    pl_assert(h->desc_nfresh != 0);
    s = h->desc_fresh++;
    h->desc_nfresh--;
  }
  __atomic_store_n(&h->desc_nfree, h->desc_nfree - 1, __ATOMIC_RELAXED);
  return s;
}

static void desc_give(heap_t *h, pl_span_t *s) {
  s->state = PL_SPAN_UNUSED;
  s->next = h->desc_free;
  h->desc_free = s;
  __atomic_store_n(&h->desc_nfree, h->desc_nfree + 1, __ATOMIC_RELAXED);
}

/* ---- buckets -------------------------------------------------------- */

static void bucket_insert(heap_t *h, pl_span_t *s) {
  size_t n = s->npages;
  s->prev = NULL;
  s->next = h->bucket[n];
  if (s->next) s->next->prev = s;
  h->bucket[n] = s;
  h->bucket_map[n / 64] |= (uint64_t)1 << (n % 64);
  add_pages(&h->dirty_pages, s->ndirty, true);
}

static void bucket_remove(heap_t *h, pl_span_t *s) {
  size_t n = s->npages;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->bucket[n] = s->next;
  if (s->next) s->next->prev = s->prev;
  if (h->bucket[n] == NULL) h->bucket_map[n / 64] &= ~((uint64_t)1 << (n % 64));
  s->next = s->prev = NULL;
  add_pages(&h->dirty_pages, s->ndirty, false);
}

/* Smallest non-empty bucket >= n, or 0. */
static size_t bucket_find(const heap_t *h, size_t n) {
  size_t w = n / 64;
  uint64_t bits = h->bucket_map[w] & (~(uint64_t)0 << (n % 64));
  for (;;) {
    if (bits) return w * 64 + (size_t)__builtin_ctzll(bits);
    if (++w >= BUCKET_WORDS) return 0;
    bits = h->bucket_map[w];
  }
}

/* ---- page map ------------------------------------------------------- */

static size_t first_page(const pl_span_t *s) {
  return (s->start - s->chunk->base) >> PL_PAGE_SHIFT;
}

/* dst[0 .. n) = v, four stores a step (spans of the big classes have up
 * to 64 page words and 32 pages: a store a step took 4 instructions a
 * page, and the word loop's per-word choice of cold or warm 13 a word,
 * 830 for a span of 256 KiB; a working set of 256 blocks of 32-256 KiB
 * replaced at random spent 16 % of its instructions there). */
static void fill_words(pl_pageword_bits_t *dst, uint64_t v, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) dst[i] = dst[i + 1] = dst[i + 2] = dst[i + 3] = v;
  for (; i < n; i++) dst[i] = v;
}
static void fill_spans(pl_span_t **dst, pl_span_t *s, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) dst[i] = dst[i + 1] = dst[i + 2] = dst[i + 3] = s;
  for (; i < n; i++) dst[i] = s;
}
PL_INLINE uint64_t pw_bits(pl_pageword_t w) {
  uint64_t b;
  memcpy(&b, &w, sizeof b);
  return b;
}

/* Points the page map at s.  A SMALL span: every page's entry, and its
 * page words, which free() of any of its blocks reads: {0, 0} where a
 * block starts, since those words start cold (cold_words, warmed by the
 * central lists as they hand out blocks), the span's word elsewhere.
 * Any other span:
 * only the entries of its first and last pages, which is all that a large
 * block's free, coalescing (through the neighbours' end pages) and the
 * walks over a chunk's spans read.  Its inner pages' entries may name
 * spans long gone: pl_span_find walks the chunk for those.  (Writing
 * every page made each large malloc and free, and each merge, cost a
 * store per 8 KiB page under the heap lock: a quarter of the time of
 * four threads churning 32 KiB-1 MiB blocks.)  The page words of a
 * non-SMALL span are left alone: {0, 0}, or ghosts on a free span
 * flagged PL_SPAN_GHOST (clear_ghosts). */
static void map_span(pl_span_t *s) {
  /* The arrays' addresses in locals: stores through them could alias the
   * record's fields, and were reloaded at each page. */
  pl_span_t **span = s->chunk->page_span;
  size_t first = first_page(s), end = first + s->npages;
  if (s->state != PL_SPAN_SMALL) {
    span[first] = s;
    span[end - 1] = s;
    return;
  }
  /* Plain stores: gcc 12.2 at -O1 and above dropped every call of this
   * function when the page_info store was an __atomic_store_n in this loop
   * (test/unit_span catches that).  A page's entries change only while no
   * block on it is live, so free() never reads one being written; each
   * word is written once, whole (cold, or warm, never warm on the way to
   * cold). */
  fill_spans(span + first, s, s->npages);
  pl_pageword_bits_t *words =
      (pl_pageword_bits_t *)(s->chunk->page_info + first * PL_PW_PER_PAGE);
  uint64_t warm = pw_bits(pl_pw_make(s->cls, s->start)), cold = pw_bits(pl_pw_make(0, 0));
  size_t nw = s->npages * PL_PW_PER_PAGE; /* (<= 64: no class's span is longer) */
  uint64_t mask = pl_low_bits64(nw) & ~pl_class_inner_words[s->cls];
  size_t k = 0;
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    size_t c = (size_t)__builtin_ctzll(m);
    fill_words(words + k, warm, c - k);
    words[c] = cold;
    k = c + 1;
  }
  fill_words(words + k, warm, nw - k);
  s->cold_words = mask;
}

/* Sets every page word of pages [first, first + n) of a chunk to w. */
static void set_page_words(pl_chunk_t *c, size_t first, size_t n, pl_pageword_t w) {
  fill_words((pl_pageword_bits_t *)(c->page_info + first * PL_PW_PER_PAGE), pw_bits(w),
             n * PL_PW_PER_PAGE);
}

/* Pages [first, first + n) of a chunk, free and flagged PL_SPAN_GHOST,
 * become part of a large block: their ghost words go (a ghost on the
 * pages of a large block freed later would make a second free of it
 * look like one of a small block). */
static void clear_ghosts(pl_chunk_t *c, size_t first, size_t n) {
  set_page_words(c, first, n, pl_pw_make(0, 0));
}

void pl_span_set_cold(pl_span_t *s, uint64_t mask, bool cold) {
  mask &= pl_low_bits64(s->npages * PL_PW_PER_PAGE);
  if (cold)
    s->cold_words |= mask;
  else
    s->cold_words &= ~mask;
  pl_pageword_t w = cold ? pl_pw_make(0, 0) : pl_pw_make(s->cls, s->start);
  pl_pageword_t *info = &s->chunk->page_info[first_page(s) * PL_PW_PER_PAGE];
  for (; mask != 0; mask &= mask - 1) {
    unsigned k = (unsigned)__builtin_ctzll(mask);
    __atomic_store_n(&info[k].span_neg, w.span_neg, __ATOMIC_RELAXED);
    __atomic_store_n(&info[k].bin, w.bin, __ATOMIC_RELAXED);
  }
}

/* ---- chunks --------------------------------------------------------- */

/* Maps a new chunk and adds it to heap h as one free span. */
static bool chunk_grow(heap_t *h) {
  pl_chunk_t *rec = pl_chunk_record_new();
  if (rec == NULL) return false;
  void *mem = pl_chunk_heap_map(rec);
  if (mem == NULL) {
    pl_chunk_record_release(rec);
    return false;
  }
  rec->kind = PL_CHUNK_HEAP;
  __atomic_store_n(&rec->heap, (uint8_t)(h - heaps), __ATOMIC_RELAXED); /* (pl_span_find may read a recycled record's) */
  rec->base = (uintptr_t)mem;
  rec->size = PL_CHUNK_SIZE;
  /* (Taking the lock after desc_reserve without looking at the pool
   * again, 32 threads of bench-servermix found it empty about once in 20
   * runs.) */
  if (!pl_chunk_map_reserve((uintptr_t)mem, PL_CHUNK_SIZE) || !lock_with_descs(h, 1)) {
    pl_chunk_heap_unmap(rec);
    pl_chunk_record_release(rec);
    return false;
  }
  pl_span_t *s = desc_take(h);
  s->start = rec->base;
  s->chunk = rec;
  s->npages = PL_CHUNK_PAGES;
  s->state = PL_SPAN_FREE;
  s->flags = PL_SPAN_ZERO;
  s->ndirty = 0;
  map_span(s);
  rec->prev = NULL;
  rec->next = h->chunk_list;
  if (h->chunk_list) h->chunk_list->prev = rec;
  h->chunk_list = rec;
  __atomic_store_n(&h->nchunks, h->nchunks + 1, __ATOMIC_RELAXED);
  bucket_insert(h, s);
  pl_chunk_map_set(rec->base, PL_CHUNK_SIZE, rec);
  pl_unlock(&h->lock);
  return true;
}

/* ---- carving --------------------------------------------------------- */

/* The free span s (out of its bucket) loses its first n pages to front:
 * they take the dirty pages first (free spans are carved from the front,
 * so that is where reused pages sit), and s keeps the rest. */
static void carve_dirty(pl_span_t *front, pl_span_t *s, size_t n) {
  uint32_t d = s->ndirty < n ? s->ndirty : (uint32_t)n;
  if (front) front->ndirty = d;
  s->ndirty -= d;
}

/* Splits the first n pages off free span s (out of its bucket) into a new
 * descriptor, which it returns (the caller maps it); s keeps the rest,
 * whose last page's entry needs no change and whose new first page's
 * entry is set here (the caller puts it where it belongs). */
static pl_span_t *split_front(heap_t *h, pl_span_t *s, size_t n) {
  pl_span_t *front = desc_take(h);
  front->start = s->start;
  front->chunk = s->chunk;
  front->npages = (uint32_t)n;
  front->state = PL_SPAN_FREE;
  front->flags = s->flags;
  front->free_since = s->free_since;
  carve_dirty(front, s, n);
  s->start += n * PL_PAGE_SIZE;
  s->npages -= (uint32_t)n;
  s->chunk->page_span[first_page(s)] = s;
  return front;
}

/* ---- freeing -------------------------------------------------------- */

/* Flags of two free spans merged into one: dirty if either part is,
 * known zero only if both parts are. */
static uint8_t merge_flags(uint8_t a, uint8_t b) {
  return (uint8_t)(((a | b) & (PL_SPAN_DIRTY | PL_SPAN_GHOST)) | (a & b & PL_SPAN_ZERO));
}

/* Free spans a and b (out of their buckets), b right after a, become one.
 * The one with more pages keeps its descriptor; returns it.  Only the
 * merged span's two end pages' entries change (map_span). */
static pl_span_t *merge(heap_t *h, pl_span_t *a, pl_span_t *b) {
  pl_span_t *keep = a->npages >= b->npages ? a : b;
  pl_span_t *gone = keep == a ? b : a;
  /* The merged span takes the age of the part with more dirty pages (the
   * later one on a tie).  Taking the later of the two always, a big span
   * of old dirty memory that absorbed a block freed just now looked
   * freshly freed, and each such merge put its decay off again
   * (bench-footprint burst-self kept 17 MiB resident for it when the
   * clock was read less often, 3aa4277). */
  if (gone->ndirty > keep->ndirty ||
      (gone->ndirty == keep->ndirty && gone->free_since > keep->free_since))
    keep->free_since = gone->free_since;
  keep->start = a->start;
  keep->npages = a->npages + b->npages;
  keep->ndirty = a->ndirty + b->ndirty;
  keep->flags = merge_flags(a->flags, b->flags);
  desc_give(h, gone);
  map_span(keep);
  return keep;
}

/* Frees s (already out of any list, its pages' entries naming it) under
 * its heap's lock h, coalescing. */
static void free_locked(heap_t *h, pl_span_t *s, uint8_t flags, uint64_t now) {
  pl_chunk_t *c = s->chunk;
  s->state = PL_SPAN_FREE;
  s->flags = flags;
  s->free_since = now;
  s->ndirty = (flags & PL_SPAN_DIRTY) ? s->npages : 0;
  size_t first = first_page(s);
  if (first > 0) {
    pl_span_t *l = c->page_span[first - 1];
    if (l->state == PL_SPAN_FREE) {
      bucket_remove(h, l);
      s = merge(h, l, s);
    }
  }
  size_t end = first_page(s) + s->npages;
  if (end < PL_CHUNK_PAGES) {
    pl_span_t *r = c->page_span[end];
    if (r->state == PL_SPAN_FREE) {
      bucket_remove(h, r);
      s = merge(h, s, r);
    }
  }
  bucket_insert(h, s);
}

/* The recent peak of the heaps' active pages: the most they held in
 * this window of pl_span_peak_ms or the last.  Memory freed since that
 * peak is memory the program used a moment ago and may well use again at
 * once: threads that come and go, each building a working set of
 * megabytes and freeing it, or a server whose load rises and falls.
 * Purging it at once, only for the next thread or request to fault it
 * back in page by page, cost up to 28 times the time of keeping it (a
 * scratch program of short-lived threads, doc/benchmarks.md); the decay
 * passes still purge what stays free for PALLET_DECAY_MS. */
uint64_t pl_span_peak_ms = 1000;
static size_t peak_cur, peak_prev;
static uint64_t peak_since;

/* Thread exits purge the heap down to half its base limit, for a process
 * that goes quiet once its threads are done.  Where threads come and go
 * (a thread per request or per task), the next ones fault those pages
 * back in at once: when a thread starts within EXIT_CHURN_MS of an
 * exit, exits keep the recent peak's room too, for pl_span_peak_ms from
 * then.  (Threads of one burst that exit one after the other while the
 * rest still allocate are not churn: no thread started after them.) */
#define EXIT_CHURN_MS 100
static uint64_t exit_ms, exit_churn_until;

/* Active pages (of all heaps) now at least active: raises the peak. */
static void note_active(size_t active) {
  size_t cur = __atomic_load_n(&peak_cur, __ATOMIC_RELAXED);
  while (active > cur &&
         !__atomic_compare_exchange_n(&peak_cur, &cur, active, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

/* Starts a new window once the current one is pl_span_peak_ms old: the
 * current peak becomes the last, and the new one starts at active. */
static void peak_turn(uint64_t now, size_t active) {
  uint64_t since = __atomic_load_n(&peak_since, __ATOMIC_RELAXED);
  if (now - since < pl_span_peak_ms ||
      !__atomic_compare_exchange_n(&peak_since, &since, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;
  __atomic_store_n(&peak_prev, __atomic_exchange_n(&peak_cur, active, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

/* Pages freed since the recent peak, with active pages in use now, at
 * most PEAK_ROOM_FLOORS times the dirty floor (PALLET_DIRTY_MAX, so that
 * 0 still means purge at once); none when pl_span_peak_ms is 0.  Dirty
 * memory up to this much is kept from the at-once purges. */
#define PEAK_ROOM_FLOORS 16
static size_t peak_room(size_t active) {
  if (pl_span_peak_ms == 0) return 0;
  size_t a = __atomic_load_n(&peak_cur, __ATOMIC_RELAXED), b = __atomic_load_n(&peak_prev, __ATOMIC_RELAXED);
  size_t peak = a > b ? a : b, cap = (pl_span_dirty_min >> PL_PAGE_SHIFT) * PEAK_ROOM_FLOORS;
  size_t room = peak > active ? peak - active : 0;
  return room < cap ? room : cap;
}

/* Pages of dirty memory the heaps together may keep before they purge
 * at once, when active pages are in use, without the recent peak's
 * room. */
static size_t dirty_base_for(size_t active) {
  size_t floor = pl_span_dirty_min >> PL_PAGE_SHIFT;
  size_t ratio = active >> pl_span_dirty_shift;
  return floor > ratio ? floor : ratio;
}

/* Dirty pages an at-once purge leaves: part of the base limit, and the
 * recent peak's room on top (the heap may have held dirty memory at its
 * peak too). */
static size_t purge_target(size_t part, size_t active) { return part + peak_room(active); }

/* Pages of dirty memory the heaps together may keep before they purge
 * at once: the base limit and the recent peak's room. */
static size_t dirty_limit_for(size_t active) { return purge_target(dirty_base_for(active), active); }

/* Dirty memory above the limit (the base limit and the recent peak's
 * room, peak_room) is purged as frees come in.  A span of
 * small blocks comes back only once every block of it has been freed, so
 * it is memory a shrinking working set left behind: past the limit (and
 * once such spans worth half the limit have come back since the last
 * purge) it is purged at once, down to a quarter of the limit, whatever
 * its age (so that a burst of small frees leaves little behind even in a
 * process that then goes quiet).  A large block may well be allocated
 * again at once: past the limit only spans free for PURGE_MIN_AGE_MS are
 * purged (at most every PURGE_MIN_AGE_MS), and past four times the limit
 * anything.
 * Neither at-once purge is made while another thread is busy in the heap
 * (pl_span_others_busy): that thread may take the spans again (at the end
 * of a multithreaded run, each thread that finishes frees its whole
 * working set while the others still run), and its calls run the decay
 * passes; only spans free for PURGE_MIN_AGE_MS go then, as past the
 * limit for large blocks.  When the last busy thread stops, its own
 * frees, or its exit, purge as before. */
#define PURGE_MIN_AGE_MS 100
static uint64_t next_soft_purge;
/* Whether a soft purge may run now (at most one every PURGE_MIN_AGE_MS,
 * whichever heap asks). */
static bool take_soft_turn(uint64_t now) {
  uint64_t next = __atomic_load_n(&next_soft_purge, __ATOMIC_RELAXED);
  return now >= next && __atomic_compare_exchange_n(&next_soft_purge, &next, now + PURGE_MIN_AGE_MS,
                                                    false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
/* Pages of small-block spans freed since the last purge.  Past the limit,
 * a small span's return purges at once only when these come to half the
 * limit: the working set of small blocks has shrunk by that much.  (At
 * every return past the limit, a program that churns big blocks, which
 * keeps the dirty memory past the limit, purged memory it was about to
 * reuse, again and again: bench-servermix took 1.3 times as long.) */
static size_t small_freed_pages;

/* What giving a span back decided, under its heap's lock, about purging
 * once the lock is dropped (the rules above). */
typedef struct purge_plan {
  bool soft, hard, small;
  size_t base, active; /* the base limit, and the active pages it was taken at */
} purge_plan_t;

/* Gives s (SMALL or LARGE, out of any list) back to its heap h, whose
 * lock is held, free since the time since (<= now), and plans the purge.
 * The limit and the dirty memory it is held against are those of all the
 * heaps together. */
static purge_plan_t give_back_locked(heap_t *h, pl_span_t *s, uint64_t now, uint64_t since) {
  pl_dassert(s->state == PL_SPAN_SMALL || s->state == PL_SPAN_LARGE);
  /* A span of fewer than 8 blocks (classes above about 8 KiB) empties
   * whenever its few blocks are freed, as in any churn of big blocks, and
   * is as likely to be needed again at once as a large block: it is
   * treated as one. */
  purge_plan_t p = {.small = s->state == PL_SPAN_SMALL && pl_class_info[s->cls].nblocks >= 8};
  add_pages(&h->active_pages, s->npages, false);
  size_t small_freed = p.small ? __atomic_add_fetch(&small_freed_pages, s->npages, __ATOMIC_RELAXED)
                               : __atomic_load_n(&small_freed_pages, __ATOMIC_RELAXED);
  uint8_t flags = PL_SPAN_DIRTY;
  if (s->state == PL_SPAN_SMALL) {
    size_t first = first_page(s);
    set_page_words(s->chunk, first, s->npages, pl_pw_ghost(s->cls, first));
    flags |= PL_SPAN_GHOST;
  }
  free_locked(h, s, flags, since);
  if (h->others_ms != now) {
    h->others_ms = now;
    page_sums_t all = all_pages();
    h->others_dirty = all.dirty - h->dirty_pages;
    h->others_active = all.active - h->active_pages;
  }
  p.active = h->active_pages + h->others_active;
  peak_turn(now, p.active);
  p.base = dirty_base_for(p.active);
  size_t dirty = h->dirty_pages + h->others_dirty;
  bool over = dirty > purge_target(p.base, p.active);
  p.soft = over && !p.small && take_soft_turn(now);
  p.hard = p.small ? over && small_freed > p.base / 2 : dirty > purge_target(4 * p.base, p.active);
  if (p.hard) __atomic_store_n(&small_freed_pages, 0, __ATOMIC_RELAXED); /* (the purge does too, but only after the unlock) */
  return p;
}

/* Carries out plan p, with no lock held. */
static void run_purge_plan(purge_plan_t p, uint64_t now) {
  /* Asked only now: the hook takes the cache registry's lock, which
   * comes before the heaps' (fork order). */
  if (PL_UNLIKELY(p.hard) && pl_span_others_busy != NULL && pl_span_others_busy(now)) {
    p.hard = false;
    p.soft = take_soft_turn(now);
  }
  if (PL_UNLIKELY(p.soft))
    pl_span_purge(PURGE_MIN_AGE_MS, false, purge_target(p.base / 2, p.active) << PL_PAGE_SHIFT);
  if (PL_UNLIKELY(p.hard)) {
    if (p.small && pl_span_release_kept != NULL) pl_span_release_kept();
    pl_span_purge(0, false, purge_target(p.small ? p.base / 4 : p.base, p.active) << PL_PAGE_SHIFT);
  }
}

void pl_span_free(pl_span_t *s) { pl_span_free_since(s, UINT64_MAX); }

void pl_span_free_since(pl_span_t *s, uint64_t since) {
  uint64_t now = pl_os_now_ms();
  heap_t *h = heap_of(s);
  pl_lock(&h->lock);
  purge_plan_t p = give_back_locked(h, s, now, since < now ? since : now);
  pl_unlock(&h->lock);
  if (PL_UNLIKELY(p.soft || p.hard)) run_purge_plan(p, now);
}

/* ---- allocation ----------------------------------------------------- */

/* A free span of heap h (locked) of at least need pages, out of its
 * bucket, with its first npages aligned to align_pages pages split off
 * (the rest, before and after, stays in the heap); NULL if none fits. */
static pl_span_t *take_locked(heap_t *h, size_t need, size_t npages, size_t align_pages) {
  size_t b = bucket_find(h, need);
  if (b == 0) return NULL;
  pl_span_t *s = h->bucket[b];
  bucket_remove(h, s);
  if (align_pages > 1) {
    uintptr_t a = PL_ALIGN_UP(s->start, align_pages * PL_PAGE_SIZE);
    size_t head = (a - s->start) >> PL_PAGE_SHIFT;
    if (head) {
      /* The misaligned head stays in the heap, under a new descriptor
       * (only its pages' entries change); carve from the rest. */
      pl_span_t *hd = split_front(h, s, head);
      map_span(hd);
      bucket_insert(h, hd);
    }
  }
  if (s->npages > npages) {
    pl_span_t *front = split_front(h, s, npages);
    bucket_insert(h, s); /* the rest */
    s = front;
  }
  return s;
}

/* Where a span comes from: the heap lock_for_alloc takes (the thread's
 * home heap, or the next one free); if nothing fits there, the other
 * heaps in turn, so that a heap maps a new chunk only when no heap has
 * room (a thread that allocates what others freed, in their heaps, uses
 * their memory); then a new chunk for the first heap. */
pl_span_t *pl_span_alloc(size_t npages, size_t align_pages, int state,
                         unsigned cls, bool *zeroed, pl_span_t *also_free) {
  pl_dassert(npages >= 1 && npages <= PL_CHUNK_PAGES);
  size_t need = npages + (align_pages > 1 ? align_pages - 1 : 0);
  uint64_t now = also_free ? pl_os_now_ms() : 0;
  purge_plan_t plan = {.soft = false};
  pl_span_t *s = NULL;
  size_t active_now = 0; /* (the other heaps' as this heap last summed them: no pass over them here) */
  if (need > PL_CHUNK_PAGES) goto out;
  heap_t *h = lock_for_alloc(2);
  if (h == NULL) goto out;
  if (also_free && heap_of(also_free) == h) {
    plan = give_back_locked(h, also_free, now, now);
    also_free = NULL;
  }
  s = take_locked(h, need, npages, align_pages);
  while (s == NULL) {
    pl_unlock(&h->lock);
    heap_t *first = h;
    unsigned nh = nheaps();
    for (unsigned i = 1; i < nh && s == NULL; i++) {
      h = &heaps[(unsigned)(first - heaps + i) % nh];
      /* A heap with no chunk has nothing to give (and would be handed
       * descriptors, whose pages it then keeps, for nothing). */
      if (__atomic_load_n(&h->nchunks, __ATOMIC_RELAXED) == 0) continue;
      if (!lock_with_descs(h, 2)) goto out;
      s = take_locked(h, need, npages, align_pages);
      if (s == NULL) pl_unlock(&h->lock);
    }
    if (s != NULL) break;
    h = first;
    if (!chunk_grow(h) || !lock_with_descs(h, 2)) goto out;
    s = take_locked(h, need, npages, align_pages);
  }
  *zeroed = (s->flags & PL_SPAN_ZERO) != 0 && !(s->flags & PL_SPAN_DIRTY);
  if (state == PL_SPAN_LARGE && (s->flags & PL_SPAN_GHOST)) clear_ghosts(s->chunk, first_page(s), s->npages);
  s->state = (uint8_t)state;
  s->cls = (uint8_t)cls;
  s->flags = 0;
  s->listed = 0;
  map_span(s);
  add_pages(&h->active_pages, s->npages, true);
  active_now = h->active_pages + h->others_active;
  pl_unlock(&h->lock);
out:
  note_active(active_now);
  if (also_free) pl_span_free(also_free); /* (not given back above) */
  if (PL_UNLIKELY(plan.soft || plan.hard)) run_purge_plan(plan, now);
  return s;
}

/* What a thread exit leaves dirty: half the base limit, and the recent
 * peak's room while threads churn (pl_span_thread_start). */
static size_t exit_target(size_t active, uint64_t now) {
  size_t half = dirty_base_for(active) / 2;
  return now < __atomic_load_n(&exit_churn_until, __ATOMIC_RELAXED) ? half + peak_room(active) : half;
}

void pl_span_thread_exit(uint64_t now) { __atomic_store_n(&exit_ms, now ? now : 1, __ATOMIC_RELAXED); }

void pl_span_thread_start(uint64_t now) {
  uint64_t at = __atomic_load_n(&exit_ms, __ATOMIC_RELAXED);
  if (at != 0 && now - at < EXIT_CHURN_MS)
    __atomic_store_n(&exit_churn_until, now + pl_span_peak_ms, __ATOMIC_RELAXED);
}

bool pl_span_over_half_limit(void) {
  page_sums_t all = all_pages();
  return all.dirty > exit_target(all.active, pl_os_now_ms());
}

size_t pl_span_purge_excess(void) {
  page_sums_t all = all_pages();
  size_t half = exit_target(all.active, pl_os_now_ms());
  return all.dirty > half ? pl_span_purge(0, false, half << PL_PAGE_SHIFT) : 0;
}

size_t pl_span_dirty_bytes(void) { return all_pages().dirty << PL_PAGE_SHIFT; }

size_t pl_span_active_bytes(void) { return all_pages().active << PL_PAGE_SHIFT; }

size_t pl_span_dirty_room(void) {
  page_sums_t all = all_pages();
  size_t limit = dirty_limit_for(all.active);
  return limit > all.dirty ? (limit - all.dirty) << PL_PAGE_SHIFT : 0;
}

void pl_span_shrink(pl_span_t *s, size_t npages) {
  if (npages >= s->npages) return;
  uint64_t now = pl_os_now_ms();
  heap_t *h = heap_of(s);
  if (!lock_with_descs(h, 1)) return; /* keep it whole: still correct */
  pl_span_t *tail = desc_take(h);
  tail->start = s->start + npages * PL_PAGE_SIZE;
  tail->chunk = s->chunk;
  tail->npages = s->npages - (uint32_t)npages;
  tail->state = PL_SPAN_LARGE;
  s->npages = (uint32_t)npages;
  map_span(s);
  map_span(tail);
  add_pages(&h->active_pages, tail->npages, false);
  free_locked(h, tail, PL_SPAN_DIRTY, now);
  pl_unlock(&h->lock);
}

bool pl_span_grow(pl_span_t *s, size_t npages) {
  bool ok = false;
  size_t active_now = 0;
  heap_t *h = heap_of(s);
  pl_lock(&h->lock);
  size_t end = first_page(s) + s->npages;
  if (npages > s->npages && end < PL_CHUNK_PAGES) {
    pl_span_t *r = s->chunk->page_span[end];
    size_t take = npages - s->npages;
    if (r->state == PL_SPAN_FREE && r->npages >= take) {
      bucket_remove(h, r);
      if (r->flags & PL_SPAN_GHOST) clear_ghosts(s->chunk, end, take);
      if (r->npages > take) {
        carve_dirty(NULL, r, take);
        r->start += take * PL_PAGE_SIZE;
        r->npages -= (uint32_t)take;
        map_span(r);
        bucket_insert(h, r);
      } else {
        desc_give(h, r);
      }
      s->npages = (uint32_t)npages;
      map_span(s);
      add_pages(&h->active_pages, take, true);
      active_now = h->active_pages + h->others_active;
      ok = true;
    }
  }
  pl_unlock(&h->lock);
  note_active(active_now);
  return ok;
}

/* ---- purging -------------------------------------------------------- */

/* pl_span_purge in heap h, down to target_pages of its dirty pages;
 * *kept counts the wholly free chunks kept mapped so far, here and in
 * the heaps before. */
static size_t purge_heap(heap_t *h, uint64_t age_ms, bool unmap_chunks, size_t target_pages,
                         size_t *kept) {
  size_t released = 0;
  enum { BATCH = 32 };
  for (int round = 0; round < 1024; round++) {
    pl_span_t *work[BATCH];
    bool unmap_it[BATCH];
    size_t n = 0;
    size_t whole_free = 0;
    pl_lock(&h->lock);
    /* Read under the lock: a span freed by another thread just before
     * has free_since <= now. */
    uint64_t now = pl_os_now_ms();
    size_t dirty_left = h->dirty_pages;
    for (size_t b = PL_CHUNK_PAGES; b >= 1 && n < BATCH; b--) {
      for (pl_span_t *s = h->bucket[b]; s && n < BATCH;) {
        pl_span_t *next = s->next;
        bool whole = s->npages == PL_CHUNK_PAGES;
        if (whole) whole_free++;
        bool unmap = whole && unmap_chunks && *kept + whole_free > pl_span_retain_chunks;
        bool purge = (s->flags & PL_SPAN_DIRTY) && dirty_left > target_pages;
        if ((unmap || purge) && s->free_since + age_ms <= now) {
          dirty_left -= s->ndirty;
          bucket_remove(h, s);
          s->state = PL_SPAN_BUSY;
          unmap_it[n] = unmap;
          work[n++] = s;
          if (unmap) {
            /* Out of the chunk list now, so that no walker (statistics,
             * heap check) meets it while it is unmapped unlocked. */
            pl_chunk_t *c = s->chunk;
            if (c->prev)
              c->prev->next = c->next;
            else
              h->chunk_list = c->next;
            if (c->next) c->next->prev = c->prev;
            __atomic_store_n(&h->nchunks, h->nchunks - 1, __ATOMIC_RELAXED);
            h->unmapped_chunks++;
          }
        }
        s = next;
      }
    }
    pl_unlock(&h->lock);
    if (n == 0) break;
    for (size_t i = 0; i < n; i++) {
      pl_span_t *s = work[i];
      size_t bytes = (size_t)s->npages * PL_PAGE_SIZE;
      if (unmap_it[i]) {
        /* Forget the chunk before unmapping it.  An arena slot stays
         * reserved for pallet: its tombstone reports a later free of a
         * block that was there as a double free (until the slot is
         * used again).  Elsewhere the OS may map something else. */
        uintptr_t base = s->chunk->base;
        pl_chunk_map_set(base, PL_CHUNK_SIZE,
                         base - pl_arena_base < pl_arena_size ? &pl_chunk_tombstone : NULL);
        pl_chunk_heap_unmap(s->chunk);
        released += bytes;
      } else if (pl_os_purge((void *)s->start, bytes, pl_span_purge_mode)) {
        released += bytes;
        s->flags = (uint8_t)((s->flags & PL_SPAN_GHOST) |
                             (pl_span_purge_mode == PL_PURGE_DONTNEED ? PL_SPAN_ZERO : 0));
      }
    }
    pl_lock(&h->lock);
    for (size_t i = 0; i < n; i++) {
      pl_span_t *s = work[i];
      if (unmap_it[i]) {
        desc_give(h, s);
        pl_chunk_record_release(s->chunk);
      } else {
        /* Back in the heap, clean; neighbours freed meanwhile coalesce. */
        uint8_t flags = s->flags;
        uint64_t since = s->free_since;
        free_locked(h, s, flags, since);
      }
    }
    pl_unlock(&h->lock);
    if (n < BATCH) break;
  }
  /* The wholly free chunks this heap keeps (no purge takes them out of
   * their bucket while the lock is dropped: only this pass did). */
  pl_lock(&h->lock);
  for (pl_span_t *s = h->bucket[PL_CHUNK_PAGES]; s; s = s->next) (*kept)++;
  pl_unlock(&h->lock);
  return released;
}

/* Each heap is purged down to its share of target_dirty, in proportion
 * to its dirty memory. */
size_t pl_span_purge(uint64_t age_ms, bool unmap_chunks, size_t target_dirty) {
  __atomic_store_n(&small_freed_pages, 0, __ATOMIC_RELAXED);
  size_t target_pages = target_dirty >> PL_PAGE_SHIFT, all = all_pages().dirty;
  size_t released = 0, kept = 0;
  for (unsigned i = 0, nh = nheaps(); i < nh; i++) {
    size_t d = __atomic_load_n(&heaps[i].dirty_pages, __ATOMIC_RELAXED);
    size_t share = all <= target_pages ? d : (size_t)((unsigned __int128)target_pages * d / all);
    released += purge_heap(&heaps[i], age_ms, unmap_chunks, share, &kept);
  }
  return released;
}

/* ---- totals and checks ---------------------------------------------- */

static void totals_of(const heap_t *h, pl_span_totals_t *t);
void pl_span_totals(pl_span_totals_t *t) {
  memset(t, 0, sizeof *t);
  for (unsigned i = 0, nh = nheaps(); i < nh; i++) {
    heap_t *h = &heaps[i];
    pl_lock(&h->lock);
    totals_of(h, t);
    pl_unlock(&h->lock);
  }
}

/* Adds heap h's figures to *t (h locked). */
static void totals_of(const heap_t *h, pl_span_totals_t *t) {
  t->chunks += h->nchunks;
  t->mapped += h->nchunks * PL_CHUNK_SIZE;
  t->unmapped_chunks += h->unmapped_chunks;
  for (pl_chunk_t *c = h->chunk_list; c; c = c->next) {
    for (size_t p = 0; p < PL_CHUNK_PAGES;) {
      pl_span_t *s = c->page_span[p];
      size_t bytes = (size_t)s->npages * PL_PAGE_SIZE;
      switch (s->state) {
        case PL_SPAN_FREE:
        case PL_SPAN_BUSY:
          t->free_bytes += bytes;
          t->dirty_bytes += (size_t)s->ndirty * PL_PAGE_SIZE;
          t->purged_bytes += bytes - (size_t)s->ndirty * PL_PAGE_SIZE;
          if (s->npages == PL_CHUNK_PAGES) t->retained_chunks++;
          break;
        case PL_SPAN_SMALL: t->small_bytes += bytes; break;
        case PL_SPAN_LARGE:
          t->large_bytes += bytes;
          if (__atomic_load_n(&s->flags, __ATOMIC_RELAXED) & PL_SPAN_PENDING) t->pending_bytes += bytes;
          break;
        default: break;
      }
      p += s->npages;
    }
  }
}

size_t pl_span_resident(void) {
  enum { MAXC = 256 };
  uintptr_t bases[MAXC];
  size_t total = 0;
  for (unsigned i = 0, nh = nheaps(); i < nh; i++) {
    heap_t *h = &heaps[i];
    for (size_t skip = 0;; ) {
      size_t n = 0, seen = 0;
      pl_lock(&h->lock);
      for (pl_chunk_t *c = h->chunk_list; c && n < MAXC; c = c->next, seen++)
        if (seen >= skip) bases[n++] = c->base;
      pl_unlock(&h->lock);
      for (size_t k = 0; k < n; k++)
        total += pl_os_resident((void *)bases[k], PL_CHUNK_SIZE);
      if (n < MAXC) break;
      skip += n;
    }
  }
  return total;
}

bool pl_span_find(const void *p, pl_span_t *out) {
  const pl_chunk_t *c = pl_chunk_lookup(p);
  size_t page = pl_chunk_page_index(p);
  bool found = false;
  if (c == NULL) return false;
  /* (The record may be reused meanwhile, for a chunk of another heap: p
   * then is in no chunk of the heap locked, and is reported as such.) */
  heap_t *h = heap_of_chunk(c);
  pl_lock(&h->lock);
  /* Only a chunk of the heap's list: one being unmapped has left it. */
  const pl_chunk_t *k = h->chunk_list;
  while (k && k != c) k = k->next;
  for (size_t q = 0; k && q < PL_CHUNK_PAGES;) {
    const pl_span_t *s = c->page_span[q];
    if (s == NULL || s->npages == 0) break;
    if (page < q + s->npages) {
      *out = *s;
      found = true;
      break;
    }
    q += s->npages;
  }
  pl_unlock(&h->lock);
  return found;
}

void pl_span_walk(void (*fn)(const pl_chunk_t *c, const pl_span_t *s, void *arg), void *arg) {
  for (unsigned i = 0, nh = nheaps(); i < nh; i++) {
    heap_t *h = &heaps[i];
    pl_lock(&h->lock);
    for (pl_chunk_t *c = h->chunk_list; c; c = c->next) {
      for (size_t p = 0; p < PL_CHUNK_PAGES;) {
        pl_span_t *s = c->page_span[p];
        fn(c, s, arg);
        p += s->npages;
      }
    }
    pl_unlock(&h->lock);
  }
}

/* pl_span_foreach_small's callback and its argument, for pl_span_walk. */
typedef struct small_walk {
  void (*fn)(const pl_span_t *s, void *arg);
  void *arg;
} small_walk_t;

static void walk_small(const pl_chunk_t *c, const pl_span_t *s, void *arg) {
  (void)c;
  const small_walk_t *w = arg;
  if (s->state == PL_SPAN_SMALL) w->fn(s, w->arg);
}

void pl_span_foreach_small(void (*fn)(const pl_span_t *s, void *arg), void *arg) {
  small_walk_t w = {fn, arg};
  pl_span_walk(walk_small, &w);
}

static int check_fail(const char *what, uintptr_t where) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: heap check: ");
  pl_msg_str(&m, what);
  pl_msg_str(&m, " at ");
  pl_msg_hex(&m, where);
  pl_msg_str(&m, "\n");
  pl_msg_write(&m);
  return -1;
}

static int check_heap(const heap_t *h);
int pl_span_heap_check(void) {
  int rc = 0;
  for (unsigned i = 0, nh = nheaps(); i < nh && rc == 0; i++) {
    heap_t *h = &heaps[i];
    pl_lock(&h->lock);
    rc = check_heap(h);
    pl_unlock(&h->lock);
  }
  return rc;
}

/* pl_span_heap_check of heap h (locked). */
static int check_heap(const heap_t *h) {
  int rc = 0;
  size_t free_spans = 0, bucketed = 0, chunks_seen = 0, dirty_seen = 0, active_seen = 0;
  for (pl_chunk_t *c = h->chunk_list; c && rc == 0; c = c->next) {
    chunks_seen++;
    if (c->kind != PL_CHUNK_HEAP) rc = check_fail("chunk of wrong kind", c->base);
    if (heap_of_chunk(c) != h) rc = check_fail("chunk in another heap's list", c->base);
    if (pl_chunk_lookup((void *)c->base) != c)
      rc = check_fail("chunk not in the map", c->base);
    bool prev_free = false;
    size_t p = 0;
    while (p < PL_CHUNK_PAGES && rc == 0) {
      pl_span_t *s = c->page_span[p];
      if (s == NULL) { rc = check_fail("page without span", c->base + p * PL_PAGE_SIZE); break; }
      if (s->chunk != c || s->start != c->base + p * PL_PAGE_SIZE || s->npages == 0 ||
          p + s->npages > PL_CHUNK_PAGES) {
        rc = check_fail("span does not tile its chunk", c->base + p * PL_PAGE_SIZE);
        break;
      }
      pl_pageword_t info = pl_pw_make(s->state == PL_SPAN_SMALL ? s->cls : 0, s->state == PL_SPAN_SMALL ? s->start : 0);
      uint64_t cold = s->state == PL_SPAN_SMALL ? __atomic_load_n(&s->cold_words, __ATOMIC_RELAXED) : 0;
      bool free_span = s->state == PL_SPAN_FREE || s->state == PL_SPAN_BUSY;
      bool ghosts = free_span && (s->flags & PL_SPAN_GHOST);
      for (size_t q = p; q < p + s->npages; q++) {
        bool ok = true;
        for (size_t k = q * PL_PW_PER_PAGE; k < (q + 1) * PL_PW_PER_PAGE; k++) {
          pl_pageword_t w = c->page_info[k];
          unsigned g = pl_pw_ghost_class(w);
          size_t kk = k - p * PL_PW_PER_PAGE; /* the word's index in the span */
          bool is_cold = kk < 64 && ((cold >> kk) & 1);
          ok = ok && (pl_pw_equal(w, is_cold ? pl_pw_make(0, 0) : info) ||
                      (ghosts && w.bin == 0 && g <= PL_NCLASSES && pl_pw_ghost_first_page(w) <= q));
        }
        bool inner = s->state != PL_SPAN_SMALL && q != p && q != p + s->npages - 1;
        if ((!inner && c->page_span[q] != s) || !ok) {
          rc = check_fail("page map disagrees with span", c->base + q * PL_PAGE_SIZE);
          break;
        }
      }
      bool is_free = s->state == PL_SPAN_FREE;
      if (is_free && prev_free) rc = check_fail("two adjacent free spans", s->start);
      if (s->state == PL_SPAN_UNUSED) rc = check_fail("unused descriptor in map", s->start);
      if (is_free) free_spans++;
      if (s->state == PL_SPAN_SMALL || s->state == PL_SPAN_LARGE) active_seen += s->npages;
      prev_free = is_free;
      p += s->npages;
    }
  }
  if (rc == 0 && chunks_seen != h->nchunks) rc = check_fail("chunk count wrong", h->nchunks);
  if (rc == 0 && active_seen != h->active_pages) rc = check_fail("active page total wrong", h->active_pages);
  for (size_t b = 1; b < NBUCKETS && rc == 0; b++) {
    bool bit = (h->bucket_map[b / 64] >> (b % 64)) & 1;
    if (bit != (h->bucket[b] != NULL)) rc = check_fail("bucket bitmap wrong", b);
    for (pl_span_t *s = h->bucket[b]; s && rc == 0; s = s->next) {
      bucketed++;
      if (s->state != PL_SPAN_FREE || s->npages != b)
        rc = check_fail("span in the wrong bucket", s->start);
      if (s->next && s->next->prev != s) rc = check_fail("bucket links broken", s->start);
      if (s->ndirty > s->npages || (s->ndirty && !(s->flags & PL_SPAN_DIRTY)))
        rc = check_fail("free span's dirty count wrong", s->start);
      dirty_seen += s->ndirty;
    }
  }
  if (rc == 0 && dirty_seen != h->dirty_pages) rc = check_fail("dirty page total wrong", h->dirty_pages);
  if (rc == 0 && bucketed != free_spans)
    rc = check_fail("free spans missing from buckets", free_spans);
  return rc;
}

/* Every heap's lock, in order (all PL_SPAN_HEAPS_MAX: a count raised
 * meanwhile cannot leave one out). */
void pl_span_fork_prepare(void) {
  for (unsigned i = 0; i < PL_SPAN_HEAPS_MAX; i++) pl_lock(&heaps[i].lock);
}
void pl_span_fork_parent(void) {
  for (unsigned i = PL_SPAN_HEAPS_MAX; i-- > 0;) pl_unlock(&heaps[i].lock);
}
void pl_span_fork_child(void) {
  for (unsigned i = 0; i < PL_SPAN_HEAPS_MAX; i++) pl_lock_init(&heaps[i].lock);
}
