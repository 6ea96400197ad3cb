/*
 * lock.h — a small mutex for pallet's internal locks: one atomic exchange
 * to take it uncontended, a futex wait when contended (0 = free, 1 = held,
 * 2 = held with waiters).  It never allocates and never calls into libc
 * except for the futex system call, so it is safe inside malloc, in fork
 * handlers and before libc is fully up.
 *
 * Lock order (every path that holds two locks takes them in this order,
 * and the fork handlers take them all in it):
 *   0. start-up                (lifecycle.c)
 *   1. thread-cache registry   (tcache.c)
 *   2. central list of class 1 .. class N   (central.c, ascending)
 *   3. span heap               (span.c)
 *   4. huge-block registry     (large.c)
 *   5. chunk-record pool       (chunk.c)
 *   6. metadata allocator      (meta.c)
 * The nestings that exist: every central lock, then the heap lock (the
 * statistics and the heap map walk spans that way); the heap lock, then
 * the chunk-record lock (purging a whole chunk).  Every other lock is held
 * alone.
 * No system call that maps or unmaps memory is made while any is held.
 */
#ifndef PL_LOCK_H
#define PL_LOCK_H

#include "common.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct pl_lock {
  int state;
} pl_lock_t;

#define PL_LOCK_INIT {0}

PL_INLINE void pl_lock_init(pl_lock_t *l) {
  __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED);
}

static inline void pl_lock_slow(pl_lock_t *l) {
  int saved = errno;
  for (int spin = 0; spin < 64; spin++) {
    if (__atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0) {
      int z = 0;
      if (__atomic_compare_exchange_n(&l->state, &z, 1, false,
                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        errno = saved;
        return;
      }
    }
    __builtin_ia32_pause();
  }
  while (__atomic_exchange_n(&l->state, 2, __ATOMIC_ACQUIRE) != 0)
    syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
  errno = saved;
}

PL_INLINE void pl_lock(pl_lock_t *l) {
  int z = 0;
  if (PL_LIKELY(__atomic_compare_exchange_n(&l->state, &z, 1, false,
                                            __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)))
    return;
  pl_lock_slow(l);
}

PL_INLINE void pl_unlock(pl_lock_t *l) {
  if (PL_UNLIKELY(__atomic_exchange_n(&l->state, 0, __ATOMIC_RELEASE) == 2)) {
    int saved = errno;
    syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
  }
}

#endif /* PL_LOCK_H */
