/*
 * lifecycle.c — start-up, threads and fork.
 */
#include "lifecycle.h"

#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "canary.h"
#include "central.h"
#include "error.h"
#include "chunk.h"
#include "lock.h"
#include "meta.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"
#include "span.h"
#include "large.h"
#include "stats.h"
#include "tcache.h"

extern char **environ;

int pl_init_state;
static pl_lock_t init_lock = PL_LOCK_INIT;
static pthread_key_t tc_key;
static bool have_key;
static int atfork_done;

static int bg_running;

/* Decay passes run at most every quarter of the decay time: a span no
 * refill took from in the last 4 passes has been left alone about that
 * long. */
#define IDLE_PAGE_PASSES 4

void pl_decay_run(uint64_t age_ms) {
  pl_central_release_spares();
  pl_central_purge_idle_pages(IDLE_PAGE_PASSES);
  /* The parked large block that threads without a cache share (api.c):
   * no thread owns it, so no idle time says when it goes; every pass
   * gives it back. */
  pl_large_flush_pending(&pl_tcache_dead.large_pending);
  pl_large_purge(age_ms);
  pl_tcache_poke_idle(pl_os_now_ms(), age_ms);
}

/* The optional background thread: every quarter of the decay time, gives
 * back what has been free for the decay time.  It never allocates. */
static void *bg_main(void *arg) {
  (void)arg;
  pl_tc = &pl_tcache_dead; /* it never caches blocks */
  for (;;) {
    uint64_t ms = pl_opt.decay_ms / 4 + 10;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    pl_decay_run(pl_opt.decay_ms);
  }
  return NULL;
}

void pl_background_ensure(void) {
  if (!pl_opt.background || __atomic_exchange_n(&bg_running, 1, __ATOMIC_ACQ_REL)) return;
  pthread_attr_t attr;
  pthread_t t;
  sigset_t all, old;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 << 10);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (pthread_create(&t, &attr, bg_main, NULL) != 0)
    __atomic_store_n(&bg_running, 0, __ATOMIC_RELEASE);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
}

/* Thread exit: the cache goes back to the central lists.  A thread that
 * exits after a burst may leave a lot of free memory behind, and nothing
 * may call into the heap for a long time after it (decay runs on slow
 * paths and free ticks): when the transfer arrays hold more than 1 MiB,
 * the heap more free memory than half its dirty limit, or freed huge
 * mappings are cached, the transfer arrays go back to their spans, the
 * heap's free memory is purged down to half the limit, whatever its age,
 * and the cached huge mappings are unmapped.  Not while another thread
 * is busy in the heap (pl_tcache_others_busy): its calls run the decay
 * passes, and it may reuse what this thread leaves (when every thread
 * that finished purged, bench-servermix with 16 threads took 1.16 times
 * as long).  The last thread to stop purges.  (Short-lived threads
 * that leave little behind pay a pass over the class locks.) */
#define EXIT_XFER_BYTES ((size_t)1 << 20)
static void tc_destructor(void *arg) {
  pl_tcache_destroy((pl_tcache_t *)arg);
  pl_span_thread_exit(pl_os_now_ms());
  pl_huge_totals_t h;
  pl_huge_totals(&h);
  if ((h.cached || pl_span_over_half_limit() || pl_central_xfer_bytes() > EXIT_XFER_BYTES) &&
      !pl_tcache_others_busy(pl_os_now_ms())) {
    pl_central_release_spares();
    pl_span_purge_excess();
    pl_huge_cache_purge(0);
  }
}

static void fork_prepare(void) {
  pl_lock(&init_lock);
  if (__atomic_load_n(&pl_init_state, __ATOMIC_ACQUIRE) != 2) return;
  pl_quarantine_fork_prepare();
  pl_tcache_fork_prepare();
  pl_central_fork_prepare();
  pl_span_fork_prepare();
  pl_huge_fork_prepare();
  pl_chunk_fork_prepare();
  pl_meta_fork_prepare();
}

static void fork_parent(void) {
  if (__atomic_load_n(&pl_init_state, __ATOMIC_ACQUIRE) != 2) {
    pl_unlock(&init_lock);
    return;
  }
  pl_meta_fork_parent();
  pl_chunk_fork_parent();
  pl_huge_fork_parent();
  pl_span_fork_parent();
  pl_central_fork_parent();
  pl_tcache_fork_parent();
  pl_quarantine_fork_parent();
  pl_unlock(&init_lock);
}

static void fork_child(void) {
  pl_lock_init(&init_lock);
  if (__atomic_load_n(&pl_init_state, __ATOMIC_ACQUIRE) != 2) return;
  pl_meta_fork_child();
  pl_chunk_fork_child();
  pl_huge_fork_child();
  pl_span_fork_child();
  pl_central_fork_child();
  pl_tcache_fork_child();
  pl_quarantine_fork_child();
  bg_running = 0; /* the thread did not survive; started again on demand */
  /* The caches of threads that did not survive are dropped, not flushed
   * (pl_tcache_fork_child says why). */
}

/* PALLET_STATS=1 (or PALLET_VERBOSE=2): the report at exit, or when the
 * library is unloaded.  Registered with atexit, which in a shared object
 * is tied to it: some programs (ls, for one) end without running the
 * destructors of preloaded libraries, but always run atexit handlers. */
static int report_fd = STDERR_FILENO;
static void report_at_exit(void) {
  static int done;
  if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL) == 0) pl_stats_write_fd(report_fd, 0);
}

/* PALLET_VERBOSE >= 1: one line with the settings in force. */
static void report_settings(void) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: " PACKAGE_VERSION " tcache_max=");
  pl_msg_dec(&m, pl_opt.tcache_max);
  pl_msg_str(&m, " tcache_total=");
  pl_msg_dec(&m, pl_opt.tcache_total);
  pl_msg_str(&m, " decay_ms=");
  pl_msg_dec(&m, pl_opt.decay_ms);
  pl_msg_str(&m, pl_opt.purge ? " purge=free" : " purge=dontneed");
  pl_msg_str(&m, " dirty_max=");
  pl_msg_dec(&m, pl_opt.dirty_max);
  pl_msg_str(&m, " retain_chunks=");
  pl_msg_dec(&m, pl_opt.retain_chunks);
  pl_msg_str(&m, " heaps=");
  pl_msg_dec(&m, pl_span_nheaps);
  pl_msg_str(&m, pl_opt.canary ? " canary=1" : " canary=0");
  pl_msg_str(&m, pl_opt.junk ? " junk=1" : " junk=0");
  pl_msg_str(&m, pl_opt.background ? " background_thread=1" : " background_thread=0");
  pl_msg_str(&m, pl_config_hardening ? " hardening=on\n" : " hardening=off\n");
  pl_msg_write(&m);
}

/* Span heaps: PALLET_HEAPS, or one per CPU the process may use (at most
 * PL_SPAN_HEAPS_MAX).  (Unit tests that never run this keep one.)  Two
 * per CPU were no faster here (2 CPUs, 5 runs: bench-buffers 0.111 s
 * both, with 8 threads 0.122 and 0.124 s) and held more memory (peak
 * RSS 55.5 against 66.2 MiB, with 8 threads 78.3 against 97.5). */
static void set_heaps(void) {
  unsigned n = pl_opt.heaps ? pl_opt.heaps : pl_os_ncpus();
  if (n > PL_SPAN_HEAPS_MAX) n = PL_SPAN_HEAPS_MAX;
  __atomic_store_n(&pl_span_nheaps, n, __ATOMIC_RELAXED);
}

void pl_init_slow(void) {
  pl_lock(&init_lock);
  if (pl_init_state != 2) {
    pl_options_parse(environ);
    pl_span_purge_mode = pl_opt.purge ? PL_PURGE_FREE : PL_PURGE_DONTNEED;
    pl_span_retain_chunks = pl_opt.retain_chunks;
    pl_tcache_max_bytes = pl_opt.tcache_max;
    pl_tcache_total_bytes = pl_opt.tcache_total;
    pl_span_dirty_min = pl_opt.dirty_max;
    pl_span_peak_ms = pl_opt.decay_ms;
    set_heaps();
    pl_span_others_busy = pl_tcache_others_busy;
    pl_span_release_kept = pl_central_release_kept;
    if (pl_opt.junk) pl_central_carve_hook = pl_junk_fresh;
    pl_sizeclass_init();
    pl_tcache_init_caps();
    uint64_t secret = pl_os_random();
    pl_secret = secret ? secret : 0x5be0cd19137e2179ull;
    have_key = pthread_key_create(&tc_key, tc_destructor) == 0;
    __atomic_store_n(&pl_init_state, 2, __ATOMIC_RELEASE);
  }
  pl_unlock(&init_lock);
  /* Outside the lock: these may allocate (and so re-enter pallet). */
  if (__atomic_exchange_n(&atfork_done, 1, __ATOMIC_ACQ_REL) == 0) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    pl_background_ensure();
    if (pl_opt.verbose >= 1) report_settings();
    if (pl_opt.stats || pl_opt.verbose >= 2) {
      /* A private copy of stderr: programs such as coreutils close
       * stderr in their own exit handlers, which run before ours. */
      int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
      if (fd >= 0) report_fd = fd;
      atexit(report_at_exit);
    }
  }
}

void pl_thread_start(void) {
  if (pl_tc != &pl_tcache_boot) return;
  pl_ensure_init();
  if (pl_opt.canary || pl_opt.junk) {
    /* Checked blocks: every allocation and free takes the slow paths. */
    pl_tc = &pl_tcache_dead;
    return;
  }
  /* A cache's bins are in the thread's TLS, and only the key's destructor
   * takes the cache off the registry when the thread exits: without the
   * key, the registry would keep bins that the next thread gets.  So no
   * key, no cache. */
  if (!have_key) {
    pl_tc = &pl_tcache_dead;
    return;
  }
  /* While the cache is built, allocations (none are made today) go
   * straight to the central lists. */
  pl_tc = &pl_tcache_init;
  pl_span_thread_start(pl_os_now_ms());
  pl_tcache_t *tc = pl_tcache_create();
  if (tc == NULL) {
    pl_tc = &pl_tcache_boot; /* try again next time */
    return;
  }
  /* The cache is whole from here: pthread_setspecific may calloc, and
   * opening the thread's bins (in pl_tcache_create) sends that to it. */
  pl_tc = tc;
  if (pthread_setspecific(tc_key, tc) != 0) pl_tcache_destroy(tc); /* the thread is DEAD */
}

__attribute__((constructor(101))) static void pl_constructor(void) { pl_ensure_init(); }

