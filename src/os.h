/*
 * os.h — the operating system, behind one small interface.  The only
 * place that includes <sys/mman.h>.  Every function leaves errno as it
 * found it.  No function here takes a lock; callers must not hold one.
 */
#ifndef PL_OS_H
#define PL_OS_H

#include "common.h"

/* Maps size bytes (a multiple of the OS page) of zeroed read-write memory
 * whose address is a multiple of align (a power of two, >= the OS page).
 * Returns NULL when the OS refuses. */
void *pl_os_map(size_t size, size_t align) PL_HIDDEN;
/* Unmaps a range that pl_os_map returned (or a page-aligned part of it). */
void pl_os_unmap(void *addr, size_t size) PL_HIDDEN;
/* Tries to grow or shrink a mapping in place; true on success. */
bool pl_os_resize_inplace(void *addr, size_t old_size, size_t new_size) PL_HIDDEN;
/* Moves the pages of [from, from + size) to to, replacing what was mapped
 * there (page tables only, no copy); from is unmapped.  false on failure
 * (then nothing moved). */
bool pl_os_move(void *from, size_t size, void *to) PL_HIDDEN;

typedef enum { PL_PURGE_DONTNEED = 0, PL_PURGE_FREE = 1 } pl_purge_mode_t;
/* Gives the physical pages of a range back to the OS.  With DONTNEED the
 * range reads as zero afterwards; with FREE its old bytes may remain until
 * the kernel reclaims them.  Returns true on success. */
bool pl_os_purge(void *addr, size_t size, pl_purge_mode_t mode) PL_HIDDEN;
/* Number of bytes of [addr, addr+size) resident in RAM (mincore). */
size_t pl_os_resident(void *addr, size_t size) PL_HIDDEN;
/* The OS page size (4096 on x86-64 Linux). */
size_t pl_os_page_size(void) PL_HIDDEN;
/* Monotonic time in milliseconds (clock_gettime through the vDSO). */
uint64_t pl_os_now_ms(void) PL_HIDDEN;
/* 64 random bits: AT_RANDOM from the kernel, mixed with getrandom when it
 * answers without blocking. */
uint64_t pl_os_random(void) PL_HIDDEN;

/* The address of the function or object `name` as the dynamic linker has
 * it now, in the first loaded object (in load order) that defines it, by
 * the objects' GNU hash tables: its default version, as an unversioned
 * lookup binds, and never an ifunc (whose value is its resolver); NULL
 * if none.  No malloc and no dlsym: for a library loaded after
 * libpallet, whose symbols libpallet's own (weak) references could not
 * see (the C++ runtime, api.c). */
void *pl_os_find_symbol(const char *name) PL_HIDDEN;
/* The CPUs this thread may run on (its affinity mask); 1 if the OS does
 * not say. */
unsigned pl_os_ncpus(void) PL_HIDDEN;

#endif /* PL_OS_H */
