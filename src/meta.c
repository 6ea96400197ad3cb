/*
 * meta.c — a bump allocator over metadata regions mapped from the OS.
 * Invariant: cur <= end, [cur, end) is unused zeroed memory of the current
 * region.  Locking: meta_lock guards cur/end/mapped; the OS is called with
 * the lock released.
 */
#include "meta.h"

#include "lock.h"
#include "os.h"

#define META_REGION ((size_t)2 << 20)

static pl_lock_t meta_lock = PL_LOCK_INIT;
static uintptr_t meta_cur, meta_end;
static size_t meta_mapped;

void *pl_meta_alloc(size_t size, size_t align) {
  size = PL_ALIGN_UP(size, 16);
  for (;;) {
    pl_lock(&meta_lock);
    uintptr_t p = PL_ALIGN_UP(meta_cur, align);
    if (meta_cur != 0 && p + size <= meta_end) {
      meta_cur = p + size;
      pl_unlock(&meta_lock);
      return (void *)p;
    }
    pl_unlock(&meta_lock);
    size_t region = size + align > META_REGION ? PL_ALIGN_UP(size + align, META_REGION)
                                               : META_REGION;
    void *r = pl_os_map(region, pl_os_page_size());
    if (r == NULL) return NULL;
    pl_lock(&meta_lock);
    meta_mapped += region;
    /* Keep whichever region has more room left. */
    if ((uintptr_t)r + region - (uintptr_t)r > meta_end - meta_cur) {
      meta_cur = (uintptr_t)r;
      meta_end = (uintptr_t)r + region;
    }
    pl_unlock(&meta_lock);
  }
}

size_t pl_meta_mapped(void) {
  pl_lock(&meta_lock);
  size_t m = meta_mapped;
  pl_unlock(&meta_lock);
  return m;
}

void pl_meta_fork_prepare(void) { pl_lock(&meta_lock); }
void pl_meta_fork_parent(void) { pl_unlock(&meta_lock); }
void pl_meta_fork_child(void) { pl_lock_init(&meta_lock); }
