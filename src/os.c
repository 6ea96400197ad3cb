/*
 * os.c — mmap, munmap, mremap, madvise, mincore, time and randomness.
 * Every entry point saves and restores errno, so that free() and the
 * heap's housekeeping never change what the program sees in errno.
 */
#include "os.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

size_t pl_os_page_size(void) {
  static size_t page;
  size_t v = __atomic_load_n(&page, __ATOMIC_RELAXED);
  if (PL_UNLIKELY(v == 0)) {
    unsigned long p = getauxval(AT_PAGESZ);
    v = p ? (size_t)p : 4096;
    __atomic_store_n(&page, v, __ATOMIC_RELAXED);
  }
  return v;
}

static void *map_raw(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *pl_os_map(size_t size, size_t align) {
  int saved = errno;
  void *res = NULL;
  if (size == 0 || size > PL_MAX_REQUEST - align) goto out;
  void *p = map_raw(size);
  if (p == NULL) goto out;
  if (((uintptr_t)p & (align - 1)) == 0) {
    res = p;
    goto out;
  }
  /* Misaligned: map again with room to spare and trim both ends. */
  munmap(p, size);
  p = map_raw(size + align);
  if (p == NULL) goto out;
  uintptr_t start = PL_ALIGN_UP((uintptr_t)p, align);
  size_t head = start - (uintptr_t)p;
  size_t tail = align - head;
  if (head) munmap(p, head);
  if (tail) munmap((void *)(start + size), tail);
  res = (void *)start;
out:
  errno = saved;
  return res;
}

void pl_os_unmap(void *addr, size_t size) {
  int saved = errno;
  if (size) munmap(addr, size);
  errno = saved;
}

bool pl_os_resize_inplace(void *addr, size_t old_size, size_t new_size) {
  int saved = errno;
  bool ok;
  if (new_size == old_size) {
    ok = true;
  } else if (new_size < old_size) {
    ok = munmap((char *)addr + new_size, old_size - new_size) == 0;
  } else {
    void *p = mremap(addr, old_size, new_size, 0);
    ok = p != MAP_FAILED;
  }
  errno = saved;
  return ok;
}

bool pl_os_move(void *from, size_t size, void *to) {
  int saved = errno;
  void *p = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  errno = saved;
  return p == to;
}

bool pl_os_purge(void *addr, size_t size, pl_purge_mode_t mode) {
  int saved = errno;
  int r = -1;
  if (mode == PL_PURGE_FREE) r = madvise(addr, size, MADV_FREE);
  if (r != 0) r = madvise(addr, size, MADV_DONTNEED);
  errno = saved;
  return r == 0;
}

size_t pl_os_resident(void *addr, size_t size) {
  int saved = errno;
  size_t page = pl_os_page_size();
  unsigned char vec[256];
  size_t total = 0;
  uintptr_t a = (uintptr_t)addr;
  uintptr_t end = a + size;
  while (a < end) {
    size_t n = (end - a) / page;
    if (n > sizeof vec) n = sizeof vec;
    if (n == 0) n = 1;
    if (mincore((void *)a, n * page, vec) == 0) {
      for (size_t i = 0; i < n; i++) total += (vec[i] & 1) ? page : 0;
    }
    a += n * page;
  }
  errno = saved;
  return total;
}

uint64_t pl_os_now_ms(void) {
  int saved = errno;
  struct timespec ts;
  /* The coarse clock (a few ms of resolution, plenty for decay times of
   * 100 ms and more) is read without the TSC: slow paths read it at every
   * 4th refill or flush, and free ticks every 128 frees. */
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  errno = saved;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t pl_os_random(void) {
  int saved = errno;
  uint64_t r = 0;
  const unsigned char *at = (const unsigned char *)getauxval(AT_RANDOM);
  if (at) {
    for (int i = 0; i < 8; i++) r = (r << 8) | at[i];
  }
  uint64_t g = 0;
  if (getrandom(&g, sizeof g, GRND_NONBLOCK) == (ssize_t)sizeof g) r ^= g;
  /* Fall back on the address of a stack variable and the clock. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r ^= (uint64_t)(uintptr_t)&g * 0x9e3779b97f4a7c15ull;
  r ^= (uint64_t)ts.tv_nsec << 17;
  errno = saved;
  return r;
}

unsigned pl_os_ncpus(void) {
  int saved = errno;
  uint64_t mask[64] = {0}; /* 4096 CPUs (a kernel built for more refuses: 1) */
  long n = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  unsigned count = 0;
  for (long i = 0; i < n / 8; i++) count += (unsigned)__builtin_popcountll(mask[i]);
  errno = saved;
  return count ? count : 1;
}
