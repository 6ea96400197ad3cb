/*
 * large.c — large blocks (whole spans) and huge blocks (own mappings).
 */
#include "large.h"

#include <string.h>

#include "lock.h"
#include "os.h"

static pl_lock_t huge_lock = PL_LOCK_INIT;
static pl_chunk_t *huge_list;
static size_t huge_count, huge_mapped, huge_usable;

/* Freed huge mappings kept for reuse, so that a program that frees and
 * allocates big blocks in a loop does not fault every page in again each
 * time; unmapped once unused for the decay time, by malloc_trim, or when
 * the cache is full.  Their slots in the chunk map hold the tombstone, so
 * a second free of one is still reported. */
#define HUGE_CACHE_SLOTS 8
size_t pl_huge_cache_max = (size_t)64 << 20;
static struct {
  pl_chunk_t *rec;
  uint64_t since;
} huge_cache[HUGE_CACHE_SLOTS];
static size_t huge_cached, huge_cached_bytes;

static size_t pages_for(size_t n) { return (n + PL_PAGE_SIZE - 1) >> PL_PAGE_SHIFT; }

void *pl_large_alloc(size_t n, size_t align, bool zero, pl_span_t **pending) {
  size_t npages = pages_for(n);
  size_t align_pages = align > PL_PAGE_SIZE ? align >> PL_PAGE_SHIFT : 1;
  if (n <= PL_LARGE_MAX && npages + align_pages - 1 <= PL_CHUNK_PAGES) {
    bool zeroed = false;
    pl_span_t *parked = pending ? __atomic_exchange_n(pending, NULL, __ATOMIC_ACQ_REL) : NULL;
    pl_span_t *s = pl_span_alloc(npages, align_pages, PL_SPAN_LARGE, 0, &zeroed, parked);
    if (s != NULL) {
      s->large_size = npages * PL_PAGE_SIZE;
      if (zero && !zeroed) memset((void *)s->start, 0, s->large_size);
      return (void *)s->start;
    }
    return NULL;
  }
  return pl_huge_alloc(n, align, zero);
}

void pl_large_free(pl_span_t *s, pl_span_t **pending) {
  if (pending == NULL) {
    pl_span_free(s);
    return;
  }
  /* Relaxed atomic: a double free in another thread may read it.  The
   * slot is swapped atomically: a decay pass may empty it (tcache.c). */
  __atomic_store_n(&s->flags, (uint8_t)(s->flags | PL_SPAN_PENDING), __ATOMIC_RELAXED);
  pl_span_t *parked = __atomic_exchange_n(pending, s, __ATOMIC_ACQ_REL);
  if (parked) pl_span_free(parked);
}

void pl_large_flush_pending(pl_span_t **pending) {
  pl_span_t *parked = __atomic_exchange_n(pending, NULL, __ATOMIC_ACQ_REL);
  if (parked) pl_span_free(parked);
}

bool pl_large_resize(pl_span_t *s, size_t n) {
  if (n > PL_LARGE_MAX) return n <= s->large_size;
  size_t npages = pages_for(n);
  if (npages == s->npages) return true;
  if (npages < s->npages) {
    pl_span_shrink(s, npages);
  } else if (!pl_span_grow(s, npages)) {
    return false;
  }
  s->large_size = (size_t)s->npages * PL_PAGE_SIZE;
  return n <= s->large_size;
}

static void huge_register(pl_chunk_t *rec) {
  pl_lock(&huge_lock);
  rec->prev = NULL;
  rec->next = huge_list;
  if (huge_list) huge_list->prev = rec;
  huge_list = rec;
  huge_count++;
  huge_mapped += rec->size;
  huge_usable += rec->usable;
  pl_unlock(&huge_lock);
}

static void unmap_record(pl_chunk_t *rec) {
  uintptr_t base = rec->base;
  size_t size = rec->size;
  pl_chunk_record_release(rec);
  pl_os_unmap((void *)base, size);
}

/* A cached mapping for a block of size bytes (a multiple of the page),
 * taken out of the cache: the smallest that holds size, or else the
 * largest that holds at least half of it (fit_cached grows it); NULL if
 * there is neither. */
static pl_chunk_t *cache_take(size_t size) {
  pl_chunk_t *best = NULL, *below = NULL;
  size_t best_i = 0, below_i = 0;
  pl_lock(&huge_lock);
  for (size_t i = 0; i < huge_cached; i++) {
    pl_chunk_t *c = huge_cache[i].rec;
    if (c->size >= size) {
      if (best == NULL || c->size < best->size) {
        best = c;
        best_i = i;
      }
    } else if (c->size >= size / 2 && (below == NULL || c->size > below->size)) {
      below = c;
      below_i = i;
    }
  }
  if (best == NULL) {
    best = below;
    best_i = below_i;
  }
  if (best) {
    huge_cache[best_i] = huge_cache[--huge_cached];
    huge_cached_bytes -= best->size;
  }
  pl_unlock(&huge_lock);
  return best;
}

/* Makes the cached mapping rec (out of the cache) size bytes long, so
 * that a new huge block reuses its pages rather than faulting in fresh
 * ones while they stay resident in the cache: one more than twice size
 * gives back its tail; a shorter one grows in place, or else its pages
 * move to the front of a new mapping (mremap: page tables, no copy).
 * *dirty: how many bytes from the start may hold old data (the rest reads
 * as zero).  false if out of memory (rec is then unmapped). */
static bool fit_cached(pl_chunk_t *rec, size_t size, size_t *dirty) {
  size_t old = rec->size;
  if (old >= size) {
    if (old / 2 > size && pl_os_resize_inplace((void *)rec->base, old, size)) rec->size = size;
    *dirty = rec->size;
    return true;
  }
  *dirty = old;
  if (pl_chunk_map_reserve(rec->base, size) &&
      pl_os_resize_inplace((void *)rec->base, old, size)) {
    rec->size = size;
    return true;
  }
  void *mem = pl_os_map(size, PL_CHUNK_SIZE);
  if (mem == NULL || !pl_chunk_map_reserve((uintptr_t)mem, size)) {
    if (mem) pl_os_unmap(mem, size);
    unmap_record(rec);
    return false;
  }
  /* The old range's slots in the chunk map keep the tombstone. */
  if (!pl_os_move((void *)rec->base, old, mem)) {
    pl_os_unmap((void *)rec->base, old);
    *dirty = 0;
  }
  rec->base = (uintptr_t)mem;
  rec->size = size;
  return true;
}

void *pl_huge_alloc(size_t n, size_t align, bool zero) {
  size_t page = pl_os_page_size();
  if (n > PL_MAX_REQUEST - PL_CHUNK_SIZE) return NULL;
  size_t size = PL_ALIGN_UP(n, page);
  if (align <= PL_CHUNK_SIZE) {
    pl_chunk_t *rec = cache_take(size);
    size_t dirty;
    if (rec != NULL && fit_cached(rec, size, &dirty)) {
      rec->kind = PL_CHUNK_HUGE;
      rec->usable = rec->size;
      if (zero) memset((void *)rec->base, 0, dirty < n ? dirty : n);
      huge_register(rec);
      pl_chunk_map_set(rec->base, rec->size, rec);
      return (void *)rec->base;
    }
  }
  if (align < PL_CHUNK_SIZE) align = PL_CHUNK_SIZE;
  void *mem = pl_os_map(size, align);
  if (mem == NULL) return NULL;
  pl_chunk_t *rec = pl_chunk_record_new();
  if (rec == NULL || !pl_chunk_map_reserve((uintptr_t)mem, size)) {
    if (rec) pl_chunk_record_release(rec);
    pl_os_unmap(mem, size);
    return NULL;
  }
  rec->kind = PL_CHUNK_HUGE;
  rec->base = (uintptr_t)mem;
  rec->size = size;
  rec->usable = size;
  huge_register(rec);
  pl_chunk_map_set(rec->base, size, rec);
  return mem;
}

void pl_huge_free(pl_chunk_t *rec) {
  uintptr_t base = rec->base;
  size_t size = rec->size;
  pl_chunk_map_set(base, size, &pl_chunk_tombstone);
  pl_chunk_t *evict = NULL;
  bool cached = false;
  uint64_t now = pl_os_now_ms();
  pl_lock(&huge_lock);
  if (rec->prev)
    rec->prev->next = rec->next;
  else
    huge_list = rec->next;
  if (rec->next) rec->next->prev = rec->prev;
  huge_count--;
  huge_mapped -= size;
  huge_usable -= rec->usable;
  if (size <= pl_huge_cache_max / 2) {
    if (huge_cached == HUGE_CACHE_SLOTS || huge_cached_bytes + size > pl_huge_cache_max) {
      /* Make room: evict the oldest entry. */
      size_t oldest = 0;
      for (size_t i = 1; i < huge_cached; i++)
        if (huge_cache[i].since < huge_cache[oldest].since) oldest = i;
      if (huge_cached) {
        evict = huge_cache[oldest].rec;
        huge_cached_bytes -= evict->size;
        huge_cache[oldest] = huge_cache[--huge_cached];
      }
    }
    if (huge_cached < HUGE_CACHE_SLOTS && huge_cached_bytes + size <= pl_huge_cache_max) {
      rec->kind = PL_CHUNK_FREED;
      huge_cache[huge_cached].rec = rec;
      huge_cache[huge_cached].since = now;
      huge_cached++;
      huge_cached_bytes += size;
      cached = true;
    }
  }
  pl_unlock(&huge_lock);
  if (evict) unmap_record(evict);
  if (!cached) unmap_record(rec);
}

size_t pl_huge_cache_purge(uint64_t age_ms) {
  size_t released = 0;
  for (;;) {
    pl_chunk_t *victim = NULL;
    pl_lock(&huge_lock);
    uint64_t now = pl_os_now_ms();
    for (size_t i = 0; i < huge_cached; i++) {
      if (huge_cache[i].since + age_ms <= now) {
        victim = huge_cache[i].rec;
        huge_cached_bytes -= victim->size;
        huge_cache[i] = huge_cache[--huge_cached];
        break;
      }
    }
    pl_unlock(&huge_lock);
    if (victim == NULL) break;
    released += victim->size;
    unmap_record(victim);
  }
  return released;
}

bool pl_huge_resize(pl_chunk_t *rec, size_t n) {
  size_t page = pl_os_page_size();
  size_t size = PL_ALIGN_UP(n, page);
  if (n == 0 || size == rec->size) return n <= rec->usable;
  if (size > rec->size && !pl_chunk_map_reserve(rec->base, size)) return false;
  if (!pl_os_resize_inplace((void *)rec->base, rec->size, size)) return false;
  size_t old = rec->size;
  if (size > old) {
    pl_chunk_map_set(rec->base, size, rec);
  } else {
    /* Forget the slots the block no longer reaches. */
    uintptr_t keep_end = PL_ALIGN_UP(rec->base + size, PL_CHUNK_SIZE);
    uintptr_t old_end = PL_ALIGN_UP(rec->base + old, PL_CHUNK_SIZE);
    if (old_end > keep_end) pl_chunk_map_set(keep_end, old_end - keep_end, NULL);
  }
  pl_lock(&huge_lock);
  huge_mapped += size - old;
  huge_usable += size - rec->usable;
  rec->size = size;
  rec->usable = size;
  pl_unlock(&huge_lock);
  return true;
}

void pl_huge_totals(pl_huge_totals_t *t) {
  pl_lock(&huge_lock);
  t->count = huge_count;
  t->mapped = huge_mapped;
  t->usable = huge_usable;
  t->cached = huge_cached_bytes;
  pl_unlock(&huge_lock);
}

size_t pl_large_purge(uint64_t age_ms) {
  return pl_span_purge(age_ms, true, 0) + pl_huge_cache_purge(age_ms);
}

size_t pl_huge_resident(void) {
  /* mincore runs outside the lock: copy the ranges out in batches. */
  enum { MAXH = 64 };
  uintptr_t base[MAXH + HUGE_CACHE_SLOTS];
  size_t size[MAXH + HUGE_CACHE_SLOTS];
  size_t total = 0, skip = 0;
  for (;;) {
    size_t n = 0, seen = 0, listed;
    pl_lock(&huge_lock);
    for (pl_chunk_t *c = huge_list; c && n < MAXH; c = c->next, seen++) {
      if (seen < skip) continue;
      base[n] = c->base;
      size[n] = c->size;
      n++;
    }
    listed = n;
    if (skip == 0) { /* the cached mappings, once */
      for (size_t i = 0; i < huge_cached; i++) {
        base[n] = huge_cache[i].rec->base;
        size[n] = huge_cache[i].rec->size;
        n++;
      }
    }
    pl_unlock(&huge_lock);
    for (size_t i = 0; i < n; i++) total += pl_os_resident((void *)base[i], size[i]);
    if (listed < MAXH) break;
    skip += listed;
  }
  return total;
}

void pl_huge_fork_prepare(void) { pl_lock(&huge_lock); }
void pl_huge_fork_parent(void) { pl_unlock(&huge_lock); }
void pl_huge_fork_child(void) { pl_lock_init(&huge_lock); }
