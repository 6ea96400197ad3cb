/*
 * lock.h — a small mutex for pallet's internal locks: one atomic exchange
 * to take it uncontended, a short adaptive spin, then a futex wait when
 * contended (0 = free, 1 = held, 2 = held with waiters).  It never
 * allocates and never calls into libc except for the futex system call,
 * so it is safe inside malloc, in fork handlers and before libc is fully
 * up.
 *
 * Lock order (every path that holds two locks takes them in this order,
 * and the fork handlers take them all in it):
 *   0. start-up                (lifecycle.c)
 *   1. thread-cache registry   (tcache.c)
 *   2. central list of class 1 .. class N   (central.c, ascending)
 *   3. span heaps 0 .. N-1     (span.c, ascending)
 *   4. huge-block registry     (large.c)
 *   5. chunk-record pool       (chunk.c)
 *   6. metadata allocator      (meta.c)
 * The nestings that exist: every central lock, then a heap lock (the
 * statistics and the heap map walk spans that way); a heap lock, then
 * the chunk-record lock (purging a whole chunk); every heap lock, in
 * order, only in the fork handlers.  Every other lock is held
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

/* A contended lock spins (pause, then a look at the state) before it
 * sleeps, for a budget that adapts: twice the number of spins that recent
 * successful spinners needed, plus 4, at most PL_LOCK_SPIN_MAX.  Each
 * holder that spun moves the estimate a quarter of the way towards its own
 * count; each that ended up sleeping takes a quarter off.  A fixed 64 was
 * fine while the lock's holder runs, but on this machine (2 vCPUs) there
 * are phases, minutes long, in which spinning mostly fails: bench-buffers
 * (4 threads on the page heap's lock) then took 0.38 s with 0.68 s of
 * user time instead of 0.15 s, against 0.28 s with this estimate (median
 * of the slow runs among 80 interleaved rounds), while calm runs stay at
 * 0.15 s; never spinning gave 0.24 s in the slow phases but 0.20 s in
 * calm ones. */
typedef struct pl_lock {
  int state;
  int spins; /* the estimate; written only by the holder */
} pl_lock_t;

#define PL_LOCK_INIT {0, 0}
#define PL_LOCK_SPIN_MAX 64

PL_INLINE void pl_lock_init(pl_lock_t *l) {
  __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&l->spins, 0, __ATOMIC_RELAXED);
}

/* One compare-and-swap from free to held; true if it took l. */
PL_INLINE bool pl_lock_cas(pl_lock_t *l) {
  int z = 0;
  return __atomic_compare_exchange_n(&l->state, &z, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Takes l if it is free, without waiting; true if taken.  (The look
 * first keeps a busy lock's line shared while it is held.) */
PL_INLINE bool pl_trylock(pl_lock_t *l) {
  return __atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0 && pl_lock_cas(l);
}

static inline void pl_lock_slow(pl_lock_t *l) {
  int saved = errno;
  int spins = __atomic_load_n(&l->spins, __ATOMIC_RELAXED);
  int max = 2 * spins + 4;
  if (max > PL_LOCK_SPIN_MAX) max = PL_LOCK_SPIN_MAX;
  for (int n = 1; n <= max; n++) {
    __builtin_ia32_pause();
    if (pl_trylock(l)) {
      __atomic_store_n(&l->spins, spins + (n - spins) / 4, __ATOMIC_RELAXED);
      errno = saved;
      return;
    }
  }
  while (__atomic_exchange_n(&l->state, 2, __ATOMIC_ACQUIRE) != 0)
    syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
  __atomic_store_n(&l->spins, spins - (spins + 3) / 4, __ATOMIC_RELAXED);
  errno = saved;
}

PL_INLINE void pl_lock(pl_lock_t *l) {
  if (PL_LIKELY(pl_lock_cas(l))) return;
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
