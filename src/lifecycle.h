/*
 * lifecycle.h — process start-up, thread set-up and tear-down, fork.
 *
 * Start-up is lazy (the first allocation) and also runs from a constructor;
 * it needs no dlsym, no stdio and no allocation.  A thread's cache is built
 * on its first slow path and torn down by a pthread key destructor; a
 * thread whose cache is being built, or is gone, allocates from the central
 * lists directly, so nested or late calls always work.
 *
 * fork: the prepare handler takes every lock in the order of lock.h; the
 * parent releases them; the child re-initialises them.  The caches of
 * threads that did not survive are left alone (one may have been half way
 * through a push or pop), so what they held stays unused in the child.
 */
#ifndef PL_LIFECYCLE_H
#define PL_LIFECYCLE_H

#include "common.h"

extern int pl_init_state PL_HIDDEN; /* 0 not yet, 2 done */

void pl_init_slow(void) PL_HIDDEN PL_COLD;

/* Makes sure the process-wide state is ready. */
PL_INLINE void pl_ensure_init(void) {
  if (PL_UNLIKELY(__atomic_load_n(&pl_init_state, __ATOMIC_ACQUIRE) != 2))
    pl_init_slow();
}
/* One decay pass: the central transfer arrays go back to their spans,
 * wholly free spans go back to the heap, whatever has been free for at
 * least age_ms is purged or unmapped, and the caches of threads that have
 * not reached the heap for age_ms are poked (tcache.h). */
void pl_decay_run(uint64_t age_ms) PL_HIDDEN;
/* Starts the purging thread if PALLET_BACKGROUND_THREAD asks for one and
 * it is not running (also again in the child of a fork). */
void pl_background_ensure(void) PL_HIDDEN;
/* Gives the calling thread a cache if it has none and can have one. */
void pl_thread_start(void) PL_HIDDEN;

#endif /* PL_LIFECYCLE_H */
