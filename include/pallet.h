/*
 * pallet.h — public interface of the pallet memory allocator.
 *
 * Every function here is also available under the standard C / glibc name
 * (malloc, free, ...) when libpallet is built with the override (the
 * default).  The pallet_ names are always exported, so a program can use
 * pallet beside another malloc, and sanitizer builds can drive pallet
 * without interposing the standard names.
 *
 * Semantics follow glibc where the standards leave room; see pallet(3).
 */
#ifndef PALLET_H
#define PALLET_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PALLET_VERSION_MAJOR 0
#define PALLET_VERSION_MINOR 1
#define PALLET_VERSION_PATCH 0
#define PALLET_VERSION "0.1.0"

#if defined(__GNUC__)
#define PALLET_API_MALLOC __attribute__((malloc, warn_unused_result))
#define PALLET_API_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define PALLET_API_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#else
#define PALLET_API_MALLOC
#define PALLET_API_ALLOC_SIZE(n)
#define PALLET_API_ALLOC_SIZE2(n, m)
#endif

/* ---- the malloc family --------------------------------------------- */
void *pallet_malloc(size_t size) PALLET_API_MALLOC PALLET_API_ALLOC_SIZE(1);
void pallet_free(void *ptr);
void *pallet_calloc(size_t nmemb, size_t size) PALLET_API_MALLOC
    PALLET_API_ALLOC_SIZE2(1, 2);
void *pallet_realloc(void *ptr, size_t size) PALLET_API_ALLOC_SIZE(2);
void *pallet_reallocarray(void *ptr, size_t nmemb, size_t size)
    PALLET_API_ALLOC_SIZE2(2, 3);
int pallet_posix_memalign(void **out, size_t alignment, size_t size);
void *pallet_aligned_alloc(size_t alignment, size_t size) PALLET_API_MALLOC
    PALLET_API_ALLOC_SIZE(2);
void *pallet_memalign(size_t alignment, size_t size) PALLET_API_MALLOC
    PALLET_API_ALLOC_SIZE(2);
void *pallet_valloc(size_t size) PALLET_API_MALLOC PALLET_API_ALLOC_SIZE(1);
void *pallet_pvalloc(size_t size) PALLET_API_MALLOC;
size_t pallet_malloc_usable_size(void *ptr);
/* C23: size must be the size passed to the allocating call (or any size up
 * to malloc_usable_size); alignment the alignment passed to aligned_alloc. */
void pallet_free_sized(void *ptr, size_t size);
void pallet_free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* ---- glibc extras --------------------------------------------------- */
/* Flushes the calling thread's cache into the central lists, returns their
 * wholly free spans to the heap, and gives every free page and cached huge
 * mapping back to the OS.  Returns 1 if memory was released, else 0. */
int pallet_malloc_trim(size_t pad);

/* Same layout as glibc's struct mallinfo2 / struct mallinfo. */
struct pallet_mallinfo2 {
  size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks,
      uordblks, fordblks, keepcost;
};
struct pallet_mallinfo {
  int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks,
      fordblks, keepcost;
};
struct pallet_mallinfo2 pallet_mallinfo2(void);
/* glibc's malloc_info: XML on fp; options must be 0. */
int pallet_malloc_info(int options, FILE *fp);
/* Accepted for compatibility; pallet is tuned with PALLET_* variables. */
int pallet_mallopt(int param, int value);
struct pallet_mallinfo pallet_mallinfo(void);
void pallet_malloc_stats(void);

/* ---- statistics ----------------------------------------------------- */
#define PALLET_NCLASSES_MAX 128

typedef struct pallet_class_stats_s {
  size_t size;      /* block size of the class, 0 past the last class */
  size_t spans;     /* spans carved into blocks of this class */
  size_t blocks;    /* blocks in those spans */
  size_t live;      /* blocks handed to the program (not free anywhere) */
  size_t cached;    /* blocks in thread caches */
  size_t central;   /* free blocks in the central lists */
} pallet_class_stats_t;

typedef struct pallet_stats_s {
  size_t allocated;   /* bytes in live blocks, counted as usable size */
  size_t active;      /* bytes of pages holding live blocks or large blocks */
  size_t resident;    /* bytes of pallet's mappings resident in RAM */
  size_t mapped;      /* bytes mapped from the OS (heap chunks + huge) */
  size_t metadata;    /* bytes mapped for pallet's own metadata */
  size_t tcache;      /* bytes in thread caches */
  size_t central;     /* bytes of free blocks in the central lists */
  size_t free_spans;  /* bytes in free spans not yet purged */
  size_t purged;      /* bytes in free spans returned to the OS */
  size_t large;       /* bytes in live large blocks (whole spans) */
  size_t huge;        /* bytes in live huge blocks (own mappings) */
  size_t chunks;      /* heap chunks mapped */
  size_t threads;     /* thread caches alive */
  size_t nclasses;    /* entries used in classes[] */
  pallet_class_stats_t classes[PALLET_NCLASSES_MAX];
} pallet_stats_t;

/* Fills *out.  Each figure is exact when no other thread allocates
 * meanwhile; with threads running, classes are read one after another.
 * Returns 0. */
int pallet_stats_get(pallet_stats_t *out);

#define PALLET_STATS_TEXT 0
#define PALLET_STATS_JSON 1
/* Writes the statistics to out (stderr if NULL) as a table or as JSON. */
void pallet_stats_print(FILE *out, int format);

/* Checks every heap invariant (spans tile their chunks, no two adjacent
 * free spans, page map consistent, every block accounted for).  Returns 0
 * when the heap is sound; on a broken invariant prints what is wrong to
 * stderr and returns -1. */
int pallet_heap_check(void);

/* Writes an SVG picture of the heap to out (doc/heapmap.md).  Returns 0,
 * or -1 with errno set (EINVAL: out is NULL; else the failed write's). */
int pallet_heap_map(FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* PALLET_H */
