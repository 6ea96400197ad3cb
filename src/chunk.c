/*
 * chunk.c — the radix map from 4 MiB slots to chunk records, the pool of
 * records, and the heap arena (chunk.h).  Leaves are installed with a
 * compare-and-swap, so the map needs no lock of its own; the record pool
 * and the arena's free slots share a small lock.
 */
#include "chunk.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "lock.h"
#include "meta.h"
#include "os.h"

pl_chunk_t **pl_chunk_map[PL_MAP_L1_SIZE];
pl_chunk_t pl_chunk_tombstone = {.kind = PL_CHUNK_FREED};
pl_chunk_t pl_chunk_none = {.kind = 0};

static pl_lock_t record_lock = PL_LOCK_INIT;
static pl_chunk_t *record_free;

bool pl_chunk_map_reserve(uintptr_t base, size_t size) {
  uintptr_t first = base >> PL_CHUNK_SHIFT;
  uintptr_t last = (base + size - 1) >> PL_CHUNK_SHIFT;
  for (uintptr_t s = first; s <= last; s++) {
    uintptr_t i1 = s >> PL_MAP_L2_BITS;
    if (i1 >= PL_MAP_L1_SIZE) return false;
    if (__atomic_load_n(&pl_chunk_map[i1], __ATOMIC_ACQUIRE) != NULL) continue;
    pl_chunk_t **leaf =
        pl_meta_alloc(PL_MAP_L2_SIZE * sizeof(pl_chunk_t *), 4096);
    if (leaf == NULL) return false; /* zeroed: every slot "not ours" */
    pl_chunk_t **expected = NULL;
    /* Losing the race wastes one leaf; that is rare and harmless. */
    __atomic_compare_exchange_n(&pl_chunk_map[i1], &expected, leaf, false,
                                __ATOMIC_RELEASE, __ATOMIC_ACQUIRE);
  }
  return true;
}

void pl_chunk_map_set(uintptr_t base, size_t size, pl_chunk_t *rec) {
  uintptr_t first = base >> PL_CHUNK_SHIFT;
  uintptr_t last = (base + size - 1) >> PL_CHUNK_SHIFT;
  for (uintptr_t s = first; s <= last; s++) {
    pl_chunk_t **leaf =
        __atomic_load_n(&pl_chunk_map[s >> PL_MAP_L2_BITS], __ATOMIC_ACQUIRE);
    pl_assert(leaf != NULL);
    __atomic_store_n(&leaf[s & (PL_MAP_L2_SIZE - 1)], rec, __ATOMIC_RELEASE);
  }
}

pl_chunk_t *pl_chunk_record_new(void) {
  pl_lock(&record_lock);
  pl_chunk_t *rec = record_free;
  if (rec) record_free = rec->next;
  pl_unlock(&record_lock);
  if (rec) {
    pl_pageword_t *own_info = rec->own_info;
    struct pl_span **own_span = rec->own_span;
    memset(rec, 0, sizeof *rec);
    rec->own_info = own_info;
    rec->own_span = own_span;
    return rec;
  }
  return pl_meta_alloc(sizeof(pl_chunk_t), PL_CACHELINE);
}

void pl_chunk_record_release(pl_chunk_t *rec) {
  pl_lock(&record_lock);
  rec->kind = 0;
  rec->next = record_free;
  record_free = rec;
  pl_unlock(&record_lock);
}

/* ---- the heap arena ------------------------------------------------- */

/* Largest and smallest reservations tried: 128 GiB of heap chunks (its
 * page map, page words and span pointers, takes 256 MiB of address space,
 * touched only where chunks are), halved until the system (a ulimit -v,
 * valgrind) allows it. */
#define ARENA_MAX ((size_t)1 << 37)
#define ARENA_MIN ((size_t)1 << 28)

uintptr_t pl_arena_base;
size_t pl_arena_size;
pl_pageword_t *pl_arena_info;
struct pl_span **pl_arena_spans;
static int arena_tried;        /* under record_lock */
static bool map_ro;            /* page-map pages writable only once used */
static uint32_t *slot_free;    /* stack of slots given back */
static size_t slot_nfree, slot_next, slot_count;

/* Reserves the arena; called once, under record_lock. */
static void arena_reserve(void) {
  int saved = errno;
  for (size_t size = ARENA_MAX; size >= ARENA_MIN; size /= 2) {
    size_t nslots = size >> PL_CHUNK_SHIFT;
    void *r = mmap(NULL, size + PL_CHUNK_SIZE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) continue;
    uintptr_t base = PL_ALIGN_UP((uintptr_t)r, PL_CHUNK_SIZE);
    size_t head = base - (uintptr_t)r;
    if (head) munmap(r, head);
    munmap((void *)(base + size), PL_CHUNK_SIZE - head);
    /* The page words (8 bytes each 4 KiB), then the span pointers (8
     * bytes a page). */
    _Static_assert(sizeof(pl_pageword_t) == sizeof(void *), "page words are 8 bytes");
    size_t info_bytes = PL_ALIGN_UP((size >> PL_PW_SHIFT) * sizeof(void *), pl_os_page_size());
    size_t span_bytes = PL_ALIGN_UP((size >> PL_PAGE_SHIFT) * sizeof(void *), pl_os_page_size());
    /* Read-only until a slot is used (pl_chunk_heap_map makes its pages
     * writable): free() may read the word of any page of the arena, and
     * reads of untouched pages cost nothing, while writable private
     * memory would be charged in full under strict overcommit. */
    map_ro = (PL_CHUNK_PAGES * sizeof(void *)) % pl_os_page_size() == 0 &&
             (PL_CHUNK_WORDS * sizeof(void *)) % pl_os_page_size() == 0;
    void *mm = mmap(NULL, info_bytes + span_bytes, map_ro ? PROT_READ : PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *arrays = mm == MAP_FAILED ? NULL : mm;
    uint32_t *stack = pl_meta_alloc(nslots * sizeof(uint32_t), PL_CACHELINE);
    if (arrays == NULL || stack == NULL) {
      if (arrays) pl_os_unmap(arrays, info_bytes + span_bytes);
      munmap((void *)base, size);
      continue; /* (stack is metadata: kept) */
    }
    slot_free = stack;
    slot_count = nslots;
    pl_arena_base = base;
    pl_arena_info = (pl_pageword_t *)arrays;
    pl_arena_spans = (struct pl_span **)(arrays + info_bytes);
    /* Last: a free() that sees the size sees the rest (it reads the size
     * first, in program order; every pointer into the arena is handed out
     * after this store). */
    __atomic_store_n(&pl_arena_size, size, __ATOMIC_RELEASE);
    break;
  }
  errno = saved;
}

void *pl_chunk_heap_map(pl_chunk_t *rec) {
  size_t slot = SIZE_MAX;
  pl_lock(&record_lock);
  if (PL_UNLIKELY(!arena_tried)) {
    arena_tried = 1;
    arena_reserve();
  }
  if (slot_nfree) slot = slot_free[--slot_nfree];
  else if (slot_next < slot_count) slot = slot_next++;
  pl_unlock(&record_lock);
  if (slot != SIZE_MAX) {
    int saved = errno;
    void *want = (void *)(pl_arena_base + (slot << PL_CHUNK_SHIFT));
    void *m = mmap(want, PL_CHUNK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    errno = saved;
    size_t first = slot << (PL_CHUNK_SHIFT - PL_PAGE_SHIFT);
    size_t first_word = slot << (PL_CHUNK_SHIFT - PL_PW_SHIFT);
    if (m == want &&
        (!map_ro || (mprotect(&pl_arena_info[first_word], PL_CHUNK_WORDS * sizeof(void *),
                              PROT_READ | PROT_WRITE) == 0 &&
                     mprotect(&pl_arena_spans[first], PL_CHUNK_PAGES * sizeof(void *),
                              PROT_READ | PROT_WRITE) == 0))) {
      errno = saved;
      rec->page_info = &pl_arena_info[first_word];
      rec->page_span = &pl_arena_spans[first];
      return m;
    }
    errno = saved;
    if (m == want)
      mmap(want, PL_CHUNK_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    pl_lock(&record_lock);
    slot_free[slot_nfree++] = (uint32_t)slot;
    pl_unlock(&record_lock);
  }
  if (rec->own_info == NULL) {
    rec->own_info = pl_meta_alloc(PL_CHUNK_WORDS * sizeof(pl_pageword_t), PL_CACHELINE);
    rec->own_span = pl_meta_alloc(PL_CHUNK_PAGES * sizeof(struct pl_span *), PL_CACHELINE);
    if (rec->own_info == NULL || rec->own_span == NULL) return NULL; /* (kept: metadata) */
  }
  void *m = pl_os_map(PL_CHUNK_SIZE, PL_CHUNK_SIZE);
  if (m == NULL) return NULL;
  memset(rec->own_info, 0, PL_CHUNK_WORDS * sizeof(pl_pageword_t));
  memset(rec->own_span, 0, PL_CHUNK_PAGES * sizeof(struct pl_span *));
  rec->page_info = rec->own_info;
  rec->page_span = rec->own_span;
  return m;
}

/* Clears (and gives back the pages of) an arena slot's page map. */
static void clear_slot_map(pl_chunk_t *rec) {
  size_t info_bytes = PL_CHUNK_WORDS * sizeof(void *), span_bytes = PL_CHUNK_PAGES * sizeof(void *);
  if (span_bytes % pl_os_page_size() == 0 &&
      pl_os_purge(rec->page_info, info_bytes, PL_PURGE_DONTNEED) &&
      pl_os_purge(rec->page_span, span_bytes, PL_PURGE_DONTNEED))
    return;
  memset(rec->page_info, 0, info_bytes);
  memset(rec->page_span, 0, span_bytes);
}

void pl_chunk_heap_unmap(pl_chunk_t *rec) {
  uintptr_t off = rec->base - pl_arena_base;
  if (off >= pl_arena_size) {
    memset(rec->page_info, 0, PL_CHUNK_WORDS * sizeof(pl_pageword_t));
    pl_os_unmap((void *)rec->base, PL_CHUNK_SIZE);
    return;
  }
  clear_slot_map(rec);
  /* Back to reserved, inaccessible address space: the pages and their
   * commit charge go back to the OS, the slot stays the arena's. */
  int saved = errno;
  void *m = mmap((void *)rec->base, PL_CHUNK_SIZE, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  errno = saved;
  if (m == MAP_FAILED) {
    /* Cannot happen short of the kernel running out of mapping slots;
     * keep the slot out of use and its memory released. */
    pl_os_purge((void *)rec->base, PL_CHUNK_SIZE, PL_PURGE_DONTNEED);
    return;
  }
  pl_lock(&record_lock);
  slot_free[slot_nfree++] = (uint32_t)(off >> PL_CHUNK_SHIFT);
  pl_unlock(&record_lock);
}

void pl_chunk_fork_prepare(void) { pl_lock(&record_lock); }
void pl_chunk_fork_parent(void) { pl_unlock(&record_lock); }
void pl_chunk_fork_child(void) { pl_lock_init(&record_lock); }
