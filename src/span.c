/*
 * span.c — the coalescing span heap.  See span.h for the invariants.
 *
 * Descriptors come from a pool refilled from metadata before the heap lock
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

static pl_lock_t heap_lock = PL_LOCK_INIT;
static pl_span_t *bucket[NBUCKETS];
static uint64_t bucket_map[BUCKET_WORDS];
static pl_chunk_t *chunk_list; /* every heap chunk */
static size_t nchunks;
static pl_span_t *desc_free;
static size_t desc_nfree;
static size_t unmapped_chunks;
/* The ndirty pages of the free spans in the buckets, and pages of SMALL
 * and LARGE spans; both under heap_lock. */
static size_t dirty_pages;
static size_t active_pages;

/* ---- descriptors ---------------------------------------------------- */

/* Makes sure at least DESC_LOW descriptors are pooled.  Called without the
 * heap lock; may map metadata. */
static bool desc_reserve(void) {
  if (__atomic_load_n(&desc_nfree, __ATOMIC_RELAXED) >= DESC_LOW) return true;
  pl_span_t *batch = pl_meta_alloc(DESC_BATCH * sizeof(pl_span_t), PL_CACHELINE);
  if (batch == NULL) return false;
  pl_lock(&heap_lock);
  for (size_t i = 0; i < DESC_BATCH; i++) {
    batch[i].next = desc_free;
    desc_free = &batch[i];
  }
  __atomic_store_n(&desc_nfree, desc_nfree + DESC_BATCH, __ATOMIC_RELAXED);
  pl_unlock(&heap_lock);
  return true;
}

/* Takes the heap lock with at least n descriptors pooled (other threads
 * may take the reserved ones between desc_reserve and the lock, so the
 * pool is looked at under it).  false, unlocked, when out of memory. */
static bool lock_with_descs(size_t n) {
  for (;;) {
    if (!desc_reserve()) return false;
    pl_lock(&heap_lock);
    if (desc_nfree >= n) return true;
    pl_unlock(&heap_lock);
  }
}

static pl_span_t *desc_take(void) {
  pl_span_t *s = desc_free;
  pl_assert(s != NULL);
  desc_free = s->next;
  __atomic_store_n(&desc_nfree, desc_nfree - 1, __ATOMIC_RELAXED);
  memset(s, 0, sizeof *s);
  return s;
}

static void desc_give(pl_span_t *s) {
  s->state = PL_SPAN_UNUSED;
  s->next = desc_free;
  desc_free = s;
  __atomic_store_n(&desc_nfree, desc_nfree + 1, __ATOMIC_RELAXED);
}

/* ---- buckets -------------------------------------------------------- */

static void bucket_insert(pl_span_t *s) {
  size_t n = s->npages;
  s->prev = NULL;
  s->next = bucket[n];
  if (s->next) s->next->prev = s;
  bucket[n] = s;
  bucket_map[n / 64] |= (uint64_t)1 << (n % 64);
  dirty_pages += s->ndirty;
}

static void bucket_remove(pl_span_t *s) {
  size_t n = s->npages;
  if (s->prev)
    s->prev->next = s->next;
  else
    bucket[n] = s->next;
  if (s->next) s->next->prev = s->prev;
  if (bucket[n] == NULL) bucket_map[n / 64] &= ~((uint64_t)1 << (n % 64));
  s->next = s->prev = NULL;
  dirty_pages -= s->ndirty;
}

/* Smallest non-empty bucket >= n, or 0. */
static size_t bucket_find(size_t n) {
  size_t w = n / 64;
  uint64_t bits = bucket_map[w] & (~(uint64_t)0 << (n % 64));
  for (;;) {
    if (bits) return w * 64 + (size_t)__builtin_ctzll(bits);
    if (++w >= BUCKET_WORDS) return 0;
    bits = bucket_map[w];
  }
}

/* ---- page map ------------------------------------------------------- */

static size_t first_page(const pl_span_t *s) {
  return (s->start - s->chunk->base) >> PL_PAGE_SHIFT;
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
   * block on it is live, so free() never reads one being written. */
  pl_pageword_t cold = pl_pw_make(0, 0), warm = pl_pw_make(s->cls, s->start);
  pl_pageword_t *words = s->chunk->page_info + first * PL_PW_PER_PAGE;
  for (size_t p = first; p < end; p++) span[p] = s;
  size_t nw = s->npages * PL_PW_PER_PAGE;
  uint64_t mask = pl_low_bits64(nw) & ~pl_class_inner_words[s->cls];
  for (size_t k = 0; k < nw; k++)
    words[k] = k < 64 && ((mask >> k) & 1) ? cold : warm; /* (no class's span is longer) */
  s->cold_words = mask;
}

/* Sets every page word of pages [first, first + n) of a chunk to w. */
static void set_page_words(pl_chunk_t *c, size_t first, size_t n, pl_pageword_t w) {
  for (size_t k = first * PL_PW_PER_PAGE; k < (first + n) * PL_PW_PER_PAGE; k++) c->page_info[k] = w;
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

/* Maps a new chunk and adds it to the heap as one free span. */
static bool chunk_grow(void) {
  pl_chunk_t *rec = pl_chunk_record_new();
  if (rec == NULL) return false;
  void *mem = pl_chunk_heap_map(rec);
  if (mem == NULL) {
    pl_chunk_record_release(rec);
    return false;
  }
  rec->kind = PL_CHUNK_HEAP;
  rec->base = (uintptr_t)mem;
  rec->size = PL_CHUNK_SIZE;
  /* (Taking the lock after desc_reserve without looking at the pool
   * again, 32 threads of bench-servermix found it empty about once in 20
   * runs.) */
  if (!pl_chunk_map_reserve((uintptr_t)mem, PL_CHUNK_SIZE) || !lock_with_descs(1)) {
    pl_chunk_heap_unmap(rec);
    pl_chunk_record_release(rec);
    return false;
  }
  pl_span_t *s = desc_take();
  s->start = rec->base;
  s->chunk = rec;
  s->npages = PL_CHUNK_PAGES;
  s->state = PL_SPAN_FREE;
  s->flags = PL_SPAN_ZERO;
  s->ndirty = 0;
  map_span(s);
  rec->prev = NULL;
  rec->next = chunk_list;
  if (chunk_list) chunk_list->prev = rec;
  chunk_list = rec;
  nchunks++;
  bucket_insert(s);
  pl_chunk_map_set(rec->base, PL_CHUNK_SIZE, rec);
  pl_unlock(&heap_lock);
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
static pl_span_t *split_front(pl_span_t *s, size_t n) {
  pl_span_t *front = desc_take();
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
static pl_span_t *merge(pl_span_t *a, pl_span_t *b) {
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
  desc_give(gone);
  map_span(keep);
  return keep;
}

/* Frees s (already out of any list, its pages' entries naming it) under
 * the heap lock, coalescing. */
static void free_locked(pl_span_t *s, uint8_t flags, uint64_t now) {
  pl_chunk_t *c = s->chunk;
  s->state = PL_SPAN_FREE;
  s->flags = flags;
  s->free_since = now;
  s->ndirty = (flags & PL_SPAN_DIRTY) ? s->npages : 0;
  size_t first = first_page(s);
  if (first > 0) {
    pl_span_t *l = c->page_span[first - 1];
    if (l->state == PL_SPAN_FREE) {
      bucket_remove(l);
      s = merge(l, s);
    }
  }
  size_t end = first_page(s) + s->npages;
  if (end < PL_CHUNK_PAGES) {
    pl_span_t *r = c->page_span[end];
    if (r->state == PL_SPAN_FREE) {
      bucket_remove(r);
      s = merge(s, r);
    }
  }
  bucket_insert(s);
}

/* Pages of dirty memory the heap may keep before it purges at once
 * (heap_lock held). */
static size_t dirty_limit_pages(void) {
  size_t floor = pl_span_dirty_min >> PL_PAGE_SHIFT;
  size_t ratio = active_pages >> pl_span_dirty_shift;
  return floor > ratio ? floor : ratio;
}

/* Dirty memory above the limit is purged as frees come in.  A span of
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
/* Pages of small-block spans freed since the last purge.  Past the limit,
 * a small span's return purges at once only when these come to half the
 * limit: the working set of small blocks has shrunk by that much.  (At
 * every return past the limit, a program that churns big blocks, which
 * keeps the dirty memory past the limit, purged memory it was about to
 * reuse, again and again: bench-servermix took 1.3 times as long.) */
static size_t small_freed_pages;

/* What giving a span back decided, under the heap lock, about purging
 * once the lock is dropped (the rules above). */
typedef struct purge_plan {
  bool soft, hard, small;
  size_t limit;
} purge_plan_t;

/* Gives s (SMALL or LARGE, out of any list) back to the heap, heap_lock
 * held, and plans the purge. */
static purge_plan_t give_back_locked(pl_span_t *s, uint64_t now) {
  pl_dassert(s->state == PL_SPAN_SMALL || s->state == PL_SPAN_LARGE);
  /* A span of fewer than 8 blocks (classes above about 8 KiB) empties
   * whenever its few blocks are freed, as in any churn of big blocks, and
   * is as likely to be needed again at once as a large block: it is
   * treated as one. */
  purge_plan_t p = {.small = s->state == PL_SPAN_SMALL && pl_class_info[s->cls].nblocks >= 8};
  active_pages -= s->npages;
  if (p.small) small_freed_pages += s->npages;
  uint8_t flags = PL_SPAN_DIRTY;
  if (s->state == PL_SPAN_SMALL) {
    size_t first = first_page(s);
    set_page_words(s->chunk, first, s->npages, pl_pw_ghost(s->cls, first));
    flags |= PL_SPAN_GHOST;
  }
  free_locked(s, flags, now);
  p.limit = dirty_limit_pages();
  bool over = dirty_pages > p.limit;
  p.soft = over && !p.small && now >= next_soft_purge;
  p.hard = p.small ? over && small_freed_pages > p.limit / 2 : dirty_pages > 4 * p.limit;
  if (p.soft) next_soft_purge = now + PURGE_MIN_AGE_MS;
  if (p.hard) small_freed_pages = 0; /* (the purge does too, but only after the unlock) */
  return p;
}

/* Carries out plan p, with no lock held. */
static void run_purge_plan(purge_plan_t p, uint64_t now) {
  /* Asked only now: the hook takes the cache registry's lock, which
   * comes before the heap's (fork order). */
  if (PL_UNLIKELY(p.hard) && pl_span_others_busy != NULL && pl_span_others_busy(now)) {
    p.hard = false;
    pl_lock(&heap_lock);
    p.soft = now >= next_soft_purge;
    if (p.soft) next_soft_purge = now + PURGE_MIN_AGE_MS;
    pl_unlock(&heap_lock);
  }
  if (PL_UNLIKELY(p.soft)) pl_span_purge(PURGE_MIN_AGE_MS, false, (p.limit / 2) << PL_PAGE_SHIFT);
  if (PL_UNLIKELY(p.hard))
    pl_span_purge(0, false, (p.small ? p.limit / 4 : p.limit) << PL_PAGE_SHIFT);
}

void pl_span_free(pl_span_t *s) {
  uint64_t now = pl_os_now_ms();
  pl_lock(&heap_lock);
  purge_plan_t p = give_back_locked(s, now);
  pl_unlock(&heap_lock);
  if (PL_UNLIKELY(p.soft || p.hard)) run_purge_plan(p, now);
}

/* ---- allocation ----------------------------------------------------- */

pl_span_t *pl_span_alloc(size_t npages, size_t align_pages, int state,
                         unsigned cls, bool *zeroed, pl_span_t *also_free) {
  pl_dassert(npages >= 1 && npages <= PL_CHUNK_PAGES);
  size_t need = npages + (align_pages > 1 ? align_pages - 1 : 0);
  uint64_t now = also_free ? pl_os_now_ms() : 0;
  purge_plan_t plan = {.soft = false};
  pl_span_t *s = NULL;
  if (need > PL_CHUNK_PAGES) goto out;
  for (;;) {
    if (!lock_with_descs(2)) goto out;
    if (also_free) {
      plan = give_back_locked(also_free, now);
      also_free = NULL;
    }
    size_t b = bucket_find(need);
    if (b == 0) {
      pl_unlock(&heap_lock);
      if (!chunk_grow()) goto out;
      continue;
    }
    s = bucket[b];
    bucket_remove(s);
    if (align_pages > 1) {
      uintptr_t a = PL_ALIGN_UP(s->start, align_pages * PL_PAGE_SIZE);
      size_t head = (a - s->start) >> PL_PAGE_SHIFT;
      if (head) {
        /* The misaligned head stays in the heap, under a new descriptor
         * (only its pages' entries change); carve from the rest. */
        pl_span_t *h = split_front(s, head);
        map_span(h);
        bucket_insert(h);
      }
    }
    if (s->npages > npages) {
      pl_span_t *front = split_front(s, npages);
      bucket_insert(s); /* the rest */
      s = front;
    }
    *zeroed = (s->flags & PL_SPAN_ZERO) != 0 && !(s->flags & PL_SPAN_DIRTY);
    if (state == PL_SPAN_LARGE && (s->flags & PL_SPAN_GHOST)) clear_ghosts(s->chunk, first_page(s), s->npages);
    s->state = (uint8_t)state;
    s->cls = (uint8_t)cls;
    s->flags = 0;
    s->listed = 0;
    map_span(s);
    active_pages += s->npages;
    pl_unlock(&heap_lock);
    break;
  }
out:
  if (also_free) pl_span_free(also_free); /* (the lock was never taken) */
  if (PL_UNLIKELY(plan.soft || plan.hard)) run_purge_plan(plan, now);
  return s;
}

bool pl_span_over_half_limit(void) {
  pl_lock(&heap_lock);
  bool over = dirty_pages > dirty_limit_pages() / 2;
  pl_unlock(&heap_lock);
  return over;
}

size_t pl_span_purge_excess(void) {
  pl_lock(&heap_lock);
  size_t half = dirty_limit_pages() / 2;
  bool over = dirty_pages > half;
  pl_unlock(&heap_lock);
  return over ? pl_span_purge(0, false, half << PL_PAGE_SHIFT) : 0;
}

size_t pl_span_dirty_bytes(void) {
  pl_lock(&heap_lock);
  size_t d = dirty_pages;
  pl_unlock(&heap_lock);
  return d << PL_PAGE_SHIFT;
}

void pl_span_shrink(pl_span_t *s, size_t npages) {
  if (npages >= s->npages) return;
  uint64_t now = pl_os_now_ms();
  if (!lock_with_descs(1)) return; /* keep it whole: still correct */
  pl_span_t *tail = desc_take();
  tail->start = s->start + npages * PL_PAGE_SIZE;
  tail->chunk = s->chunk;
  tail->npages = s->npages - (uint32_t)npages;
  tail->state = PL_SPAN_LARGE;
  s->npages = (uint32_t)npages;
  map_span(s);
  map_span(tail);
  active_pages -= tail->npages;
  free_locked(tail, PL_SPAN_DIRTY, now);
  pl_unlock(&heap_lock);
}

bool pl_span_grow(pl_span_t *s, size_t npages) {
  bool ok = false;
  pl_lock(&heap_lock);
  size_t end = first_page(s) + s->npages;
  if (npages > s->npages && end < PL_CHUNK_PAGES) {
    pl_span_t *r = s->chunk->page_span[end];
    size_t take = npages - s->npages;
    if (r->state == PL_SPAN_FREE && r->npages >= take) {
      bucket_remove(r);
      if (r->flags & PL_SPAN_GHOST) clear_ghosts(s->chunk, end, take);
      if (r->npages > take) {
        carve_dirty(NULL, r, take);
        r->start += take * PL_PAGE_SIZE;
        r->npages -= (uint32_t)take;
        map_span(r);
        bucket_insert(r);
      } else {
        desc_give(r);
      }
      s->npages = (uint32_t)npages;
      map_span(s);
      active_pages += take;
      ok = true;
    }
  }
  pl_unlock(&heap_lock);
  return ok;
}

/* ---- purging -------------------------------------------------------- */

size_t pl_span_purge(uint64_t age_ms, bool unmap_chunks, size_t target_dirty) {
  size_t released = 0;
  size_t target_pages = target_dirty >> PL_PAGE_SHIFT;
  enum { BATCH = 32 };
  for (int round = 0; round < 1024; round++) {
    pl_span_t *work[BATCH];
    bool unmap_it[BATCH];
    size_t n = 0;
    size_t whole_free = 0;
    pl_lock(&heap_lock);
    if (round == 0) small_freed_pages = 0;
    /* Read under the lock: a span freed by another thread just before
     * has free_since <= now. */
    uint64_t now = pl_os_now_ms();
    size_t dirty_left = dirty_pages;
    for (size_t b = PL_CHUNK_PAGES; b >= 1 && n < BATCH; b--) {
      for (pl_span_t *s = bucket[b]; s && n < BATCH;) {
        pl_span_t *next = s->next;
        bool whole = s->npages == PL_CHUNK_PAGES;
        if (whole) whole_free++;
        bool unmap = whole && unmap_chunks && whole_free > pl_span_retain_chunks;
        bool purge = (s->flags & PL_SPAN_DIRTY) && dirty_left > target_pages;
        if ((unmap || purge) && s->free_since + age_ms <= now) {
          dirty_left -= s->ndirty;
          bucket_remove(s);
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
              chunk_list = c->next;
            if (c->next) c->next->prev = c->prev;
            nchunks--;
            unmapped_chunks++;
          }
        }
        s = next;
      }
    }
    pl_unlock(&heap_lock);
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
    pl_lock(&heap_lock);
    for (size_t i = 0; i < n; i++) {
      pl_span_t *s = work[i];
      if (unmap_it[i]) {
        desc_give(s);
        pl_chunk_record_release(s->chunk);
      } else {
        /* Back in the heap, clean; neighbours freed meanwhile coalesce. */
        uint8_t flags = s->flags;
        uint64_t since = s->free_since;
        free_locked(s, flags, since);
      }
    }
    pl_unlock(&heap_lock);
    if (n < BATCH) break;
  }
  return released;
}

/* ---- totals and checks ---------------------------------------------- */

void pl_span_totals(pl_span_totals_t *t) {
  memset(t, 0, sizeof *t);
  pl_lock(&heap_lock);
  t->chunks = nchunks;
  t->mapped = nchunks * PL_CHUNK_SIZE;
  t->unmapped_chunks = unmapped_chunks;
  for (pl_chunk_t *c = chunk_list; c; c = c->next) {
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
  pl_unlock(&heap_lock);
}

size_t pl_span_resident(void) {
  enum { MAXC = 256 };
  uintptr_t bases[MAXC];
  size_t total = 0, skip = 0;
  for (;;) {
    size_t n = 0, seen = 0;
    pl_lock(&heap_lock);
    for (pl_chunk_t *c = chunk_list; c && n < MAXC; c = c->next, seen++)
      if (seen >= skip) bases[n++] = c->base;
    pl_unlock(&heap_lock);
    for (size_t i = 0; i < n; i++)
      total += pl_os_resident((void *)bases[i], PL_CHUNK_SIZE);
    if (n < MAXC) break;
    skip += n;
  }
  return total;
}

bool pl_span_find(const void *p, pl_span_t *out) {
  const pl_chunk_t *c = pl_chunk_lookup(p);
  size_t page = pl_chunk_page_index(p);
  bool found = false;
  if (c == NULL) return false;
  pl_lock(&heap_lock);
  /* Only a chunk of the heap's list: one being unmapped has left it. */
  const pl_chunk_t *k = chunk_list;
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
  pl_unlock(&heap_lock);
  return found;
}

void pl_span_walk(void (*fn)(const pl_chunk_t *c, const pl_span_t *s, void *arg), void *arg) {
  pl_lock(&heap_lock);
  for (pl_chunk_t *c = chunk_list; c; c = c->next) {
    for (size_t p = 0; p < PL_CHUNK_PAGES;) {
      pl_span_t *s = c->page_span[p];
      fn(c, s, arg);
      p += s->npages;
    }
  }
  pl_unlock(&heap_lock);
}

void pl_span_foreach_small(void (*fn)(const pl_span_t *s, void *arg), void *arg) {
  pl_lock(&heap_lock);
  for (pl_chunk_t *c = chunk_list; c; c = c->next) {
    for (size_t p = 0; p < PL_CHUNK_PAGES;) {
      pl_span_t *s = c->page_span[p];
      if (s->state == PL_SPAN_SMALL) fn(s, arg);
      p += s->npages;
    }
  }
  pl_unlock(&heap_lock);
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

int pl_span_heap_check(void) {
  int rc = 0;
  size_t free_spans = 0, bucketed = 0, chunks_seen = 0, dirty_seen = 0;
  pl_lock(&heap_lock);
  for (pl_chunk_t *c = chunk_list; c && rc == 0; c = c->next) {
    chunks_seen++;
    if (c->kind != PL_CHUNK_HEAP) rc = check_fail("chunk of wrong kind", c->base);
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
      prev_free = is_free;
      p += s->npages;
    }
  }
  if (rc == 0 && chunks_seen != nchunks) rc = check_fail("chunk count wrong", nchunks);
  for (size_t b = 1; b < NBUCKETS && rc == 0; b++) {
    bool bit = (bucket_map[b / 64] >> (b % 64)) & 1;
    if (bit != (bucket[b] != NULL)) rc = check_fail("bucket bitmap wrong", b);
    for (pl_span_t *s = bucket[b]; s && rc == 0; s = s->next) {
      bucketed++;
      if (s->state != PL_SPAN_FREE || s->npages != b)
        rc = check_fail("span in the wrong bucket", s->start);
      if (s->next && s->next->prev != s) rc = check_fail("bucket links broken", s->start);
      if (s->ndirty > s->npages || (s->ndirty && !(s->flags & PL_SPAN_DIRTY)))
        rc = check_fail("free span's dirty count wrong", s->start);
      dirty_seen += s->ndirty;
    }
  }
  if (rc == 0 && dirty_seen != dirty_pages) rc = check_fail("dirty page total wrong", dirty_pages);
  if (rc == 0 && bucketed != free_spans)
    rc = check_fail("free spans missing from buckets", free_spans);
  pl_unlock(&heap_lock);
  return rc;
}

void pl_span_fork_prepare(void) { pl_lock(&heap_lock); }
void pl_span_fork_parent(void) { pl_unlock(&heap_lock); }
void pl_span_fork_child(void) { pl_lock_init(&heap_lock); }
