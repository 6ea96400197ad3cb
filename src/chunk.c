/*
 * chunk.c — the radix map from 4 MiB slots to chunk records, and the pool
 * of records.  Leaves are installed with a compare-and-swap, so the map
 * needs no lock of its own; the record pool has a small lock.
 */
#include "chunk.h"

#include <string.h>

#include "lock.h"
#include "meta.h"

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
    if (leaf == NULL) return false;
    for (size_t i = 0; i < PL_MAP_L2_SIZE; i++) leaf[i] = &pl_chunk_none;
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
    __atomic_store_n(&leaf[s & (PL_MAP_L2_SIZE - 1)], rec ? rec : &pl_chunk_none,
                     __ATOMIC_RELEASE);
  }
}

pl_chunk_t *pl_chunk_record_new(void) {
  pl_lock(&record_lock);
  pl_chunk_t *rec = record_free;
  if (rec) record_free = rec->next;
  pl_unlock(&record_lock);
  if (rec) {
    memset(rec, 0, sizeof *rec);
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

void pl_chunk_fork_prepare(void) { pl_lock(&record_lock); }
void pl_chunk_fork_parent(void) { pl_unlock(&record_lock); }
void pl_chunk_fork_child(void) { pl_lock_init(&record_lock); }
