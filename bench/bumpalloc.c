/*
 * bumpalloc.c — a do-nothing allocator, for instruction counting only.
 *
 * Built as bench/.libs/bumpalloc.so and LD_PRELOADed by
 * `bench/runner --callgrind`: it hands out memory by bumping a pointer over
 * one big MAP_NORESERVE mapping and never reuses anything (free does
 * nothing).  A benchmark run under it costs the benchmark loop's own
 * instructions plus a handful for the bump, so subtracting its instruction
 * count from another allocator's leaves that allocator's own work.  Not a
 * usable malloc: memory is never given back.
 */
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 16 /* each block is preceded by its size */

static char *arena;
static size_t arena_size; /* address space only: MAP_NORESERVE */
static _Atomic size_t used;

static char *bump_arena(void) {
  if (__builtin_expect(arena == NULL, 0)) {
    /* As big as the system (or valgrind, which caps the address space)
     * lets us map. */
    for (size_t sz = (size_t)64 << 30; sz >= ((size_t)256 << 20); sz /= 2) {
      void *m = mmap(NULL, sz, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m != MAP_FAILED) {
        arena_size = sz;
        arena = m;
        return arena;
      }
    }
    abort();
  }
  return arena;
}

/* A block of size bytes whose address is a multiple of align (a power of
 * two, at least 16). */
static void *bump(size_t size, size_t align) {
  char *base = bump_arena();
  if (size > arena_size / 2) {
    errno = ENOMEM;
    return NULL;
  }
  size_t need = (size + HDR + align - 1 + 15) & ~(size_t)15;
  size_t off = atomic_fetch_add_explicit(&used, need, memory_order_relaxed);
  if (off + need > arena_size) {
    errno = ENOMEM;
    return NULL;
  }
  uintptr_t p = ((uintptr_t)(base + off) + HDR + align - 1) & ~(uintptr_t)(align - 1);
  ((size_t *)p)[-1] = size;
  return (void *)p;
}

static size_t bump_size(const void *p) { return ((const size_t *)p)[-1]; }

__attribute__((visibility("default"))) void *malloc(size_t size) {
  return bump(size, 16);
}

__attribute__((visibility("default"))) void free(void *p) { (void)p; }

__attribute__((visibility("default"))) void *calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return bump(total, 16); /* fresh anonymous memory is already zero */
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t size) {
  if (p == NULL)
    return bump(size, 16);
  size_t old = bump_size(p);
  if (size <= old) {
    ((size_t *)p)[-1] = size;
    return p;
  }
  void *q = bump(size, 16);
  if (q != NULL)
    memcpy(q, p, old);
  return q;
}

__attribute__((visibility("default"))) void *reallocarray(void *p, size_t n,
                                                          size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, total);
}

__attribute__((visibility("default"))) int
posix_memalign(void **out, size_t align, size_t size) {
  if (align < sizeof(void *) || (align & (align - 1)) != 0)
    return EINVAL;
  void *p = bump(size, align < 16 ? 16 : align);
  if (p == NULL)
    return ENOMEM;
  *out = p;
  return 0;
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t align,
                                                           size_t size) {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return NULL;
  }
  return bump(size, align < 16 ? 16 : align);
}

__attribute__((visibility("default"))) void *memalign(size_t align,
                                                      size_t size) {
  return aligned_alloc(align, size);
}

__attribute__((visibility("default"))) void *valloc(size_t size) {
  return bump(size, 4096);
}

__attribute__((visibility("default"))) void *pvalloc(size_t size) {
  return bump((size + 4095) & ~(size_t)4095, 4096);
}

__attribute__((visibility("default"))) size_t malloc_usable_size(void *p) {
  return p == NULL ? 0 : bump_size(p);
}
