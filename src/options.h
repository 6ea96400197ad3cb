/*
 * options.h — PALLET_* environment variables, read once at start-up
 * without allocating.  A bad value or an unknown PALLET_ name gives one
 * warning line on stderr and the default.
 */
#ifndef PL_OPTIONS_H
#define PL_OPTIONS_H

#include "common.h"

/* The thread caches' budgets by default (tcache.c starts from them too,
 * before pl_init_slow copies the options in). */
#define PL_TCACHE_MAX_DEFAULT ((size_t)8 << 20)
#define PL_TCACHE_TOTAL_DEFAULT ((size_t)32 << 20)

typedef struct pl_options {
  bool stats;            /* PALLET_STATS: report at exit */
  int verbose;           /* PALLET_VERBOSE: 1 settings at start, 2 also stats at exit */
  size_t tcache_max;     /* PALLET_TCACHE_MAX: bytes per thread cache */
  size_t tcache_total;   /* PALLET_TCACHE_TOTAL: bytes of all thread caches (0: no bound) */
  uint64_t decay_ms;     /* PALLET_DECAY_MS: free spans older are purged */
  int purge;             /* PALLET_PURGE: 0 dontneed, 1 free */
  bool canary;           /* PALLET_CANARY: check bytes after each block */
  bool junk;             /* PALLET_JUNK: fill freed blocks */
  bool background;       /* PALLET_BACKGROUND_THREAD: purge on a timer */
  size_t retain_chunks;  /* PALLET_RETAIN_CHUNKS: free chunks kept mapped */
  size_t dirty_max;      /* PALLET_DIRTY_MAX: free memory kept regardless of age */
  unsigned heaps;        /* PALLET_HEAPS: span heaps, 1 .. 16 (0: not set, one per CPU) */
} pl_options_t;

extern pl_options_t pl_opt PL_HIDDEN;

/* Parses the environment (envp may be NULL: nothing set). */
void pl_options_parse(char *const *envp) PL_HIDDEN;

#endif /* PL_OPTIONS_H */
