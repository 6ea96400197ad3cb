/*
 * pallet-stress.c — a multithreaded stress test for malloc implementations.
 *
 * Worker threads allocate, fill, check, reallocate, hand over and free
 * blocks of many sizes as fast as they can.  Every block carries a pattern
 * derived from its address, size and a per-allocation tag, so a byte that
 * changes while the program owns the block, a block handed out twice, a
 * realloc that loses data, a misaligned pointer, a short usable size or
 * dirty calloc memory is reported (what, where, which thread) and the
 * program exits with status 1.  Optional forks from a running thread,
 * thread churn and a watchdog for deadlocks complete the picture.
 *
 * Built twice from this one file:
 *   pallet-stress      calls malloc/free/..., so LD_PRELOAD picks the
 *                      allocator under test;
 *   pallet-stress-api  (-DSTRESS_PALLET_API) calls pallet_malloc/... and
 *                      links pallet statically, for sanitizer builds.
 * Its own bookkeeping lives in mmap'd memory, away from the allocator.
 * Exit status: 0 clean run, 1 a check failed, 2 bad command line.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the allocator under test: one macro layer, two builds ----------- */
#ifdef STRESS_PALLET_API
#include "pallet.h"
#define ST_PROG "pallet-stress-api"
#define ST_API "pallet"
#define ST_MALLOC(n) pallet_malloc(n)
#define ST_CALLOC(m, n) pallet_calloc(m, n)
#define ST_REALLOC(p, n) pallet_realloc(p, n)
#define ST_POSIX_MEMALIGN(o, a, n) pallet_posix_memalign(o, a, n)
#define ST_ALIGNED_ALLOC(a, n) pallet_aligned_alloc(a, n)
#define ST_MEMALIGN(a, n) pallet_memalign(a, n)
#define ST_VALLOC(n) pallet_valloc(n)
#define ST_FREE(p) pallet_free(p)
#define ST_FREE_SIZED(p, n) pallet_free_sized(p, n)
#define ST_FREE_ALIGNED_SIZED(p, a, n) pallet_free_aligned_sized(p, a, n)
#define ST_USABLE(p) pallet_malloc_usable_size(p)
#define ST_HAVE_SIZED_FREE 1
#define ST_HEAP_CHECK() pallet_heap_check()
#define ST_HAVE_HEAP_CHECK() 1
#else
#define ST_PROG "pallet-stress"
#define ST_API "malloc"
#define ST_MALLOC(n) malloc(n)
#define ST_CALLOC(m, n) calloc(m, n)
#define ST_REALLOC(p, n) realloc(p, n)
#define ST_POSIX_MEMALIGN(o, a, n) posix_memalign(o, a, n)
#define ST_ALIGNED_ALLOC(a, n) aligned_alloc(a, n)
#define ST_MEMALIGN(a, n) memalign(a, n)
#define ST_VALLOC(n) valloc(n)
#define ST_FREE(p) free(p)
#define ST_FREE_SIZED(p, n) ((void)(n), free(p))
#define ST_FREE_ALIGNED_SIZED(p, a, n) ((void)(a), (void)(n), free(p))
#define ST_USABLE(p) malloc_usable_size(p)
#define ST_HAVE_SIZED_FREE 0
/* When pallet is preloaded, its heap checker is found at run time. */
extern int pallet_heap_check(void) __attribute__((weak));
#define ST_HEAP_CHECK() pallet_heap_check()
#define ST_HAVE_HEAP_CHECK() (pallet_heap_check != NULL)
#endif

#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* ---- operations: counters and "what is this thread doing" ----------- */
enum op {
  OP_NONE,
  OP_MALLOC,
  OP_CALLOC,
  OP_REALLOC,
  OP_POSIX_MEMALIGN,
  OP_ALIGNED_ALLOC,
  OP_MEMALIGN,
  OP_VALLOC,
  OP_FREE,
  OP_FREE_SIZED,
  OP_FREE_REMOTE,  /* free of a block another thread allocated */
  OP_HANDOFF,      /* block posted to another thread's mailbox */
  OP_SHORT,        /* allocate-check-free at once */
  OP_FORK,
  OP_USABLE,       /* states only from here on */
  OP_MAILBOX,
  OP_FORK_WAIT,
  OP_CHURN_EXIT,
  OP_CLEANUP,
  OP_NCOUNTED = OP_USABLE,
  OP_NSTATES = OP_CLEANUP + 1
};

static const char *const op_name[OP_NSTATES] = {
    "bookkeeping",     "malloc",        "calloc",
    "realloc",         "posix_memalign", "aligned_alloc",
    "memalign",        "valloc",        "free",
    "free_sized",      "free_remote",   "handoff",
    "short_lived",     "fork",          "malloc_usable_size",
    "mailbox",         "waiting for fork child", "thread exit (churn)",
    "final cleanup"};

/* ---- configuration --------------------------------------------------- */
enum sizes { SZ_SMALL, SZ_MIXED, SZ_LARGE, SZ_POWER, SZ_SERVER };
static const char *const sizes_name[] = {"small", "mixed", "large",
                                         "power-law", "server-like"};

static struct config {
  unsigned threads;
  uint64_t duration_ms; /* 0: no time limit */
  uint64_t ops;         /* 0: no op limit */
  enum sizes sizes;
  unsigned cross, realloc_pct, align;
  uint64_t fork_every;
  bool churn;
  uint64_t churn_ops;
  uint64_t seed;
  bool json, quiet;
  size_t slots;
  size_t max_live; /* bytes per thread */
  size_t min_align;
  unsigned watchdog_s, fork_timeout_s;
} cfg = {
    .threads = 4,
    .duration_ms = 10000,
    .ops = 0,
    .sizes = SZ_MIXED,
    .cross = 10,
    .realloc_pct = 10,
    .align = 5,
    .fork_every = 0,
    .churn = false,
    .churn_ops = 20000,
    .seed = 0,
    .json = false,
    .quiet = false,
    .slots = 4096,
    .max_live = (size_t)64 << 20,
    .min_align = 0,
    .watchdog_s = 20,
    .fork_timeout_s = 10,
};

/* ---- blocks, mailboxes, workers -------------------------------------- */
enum kind { K_MALLOC, K_CALLOC, K_REALLOC, K_POSIX_MEMALIGN, K_ALIGNED_ALLOC,
            K_MEMALIGN, K_VALLOC };
static const char *const kind_name[] = {"malloc", "calloc", "realloc",
                                        "posix_memalign", "aligned_alloc",
                                        "memalign", "valloc"};

struct slot {
  unsigned char *p; /* NULL: empty */
  size_t size;      /* bytes requested */
  uint64_t hash;    /* pattern key: f(address, size, tag, seed) */
  uint64_t tag;     /* allocating thread index << 48 | serial */
  uint32_t kind;
  uint32_t align;   /* alignment requested, 0 if none */
};

#define MAILBOX_CAP 4096
#define BATCH 64

struct worker {
  /* read by the monitor thread */
  _Atomic uint64_t ops;       /* allocator calls */
  _Atomic uint64_t live;      /* blocks held in slots */
  _Atomic uint64_t heartbeat; /* bumped at every step */
  _Atomic int state;          /* enum op */
  _Atomic size_t cur_size;
  _Atomic uintptr_t cur_ptr;
  _Atomic pid_t child;        /* fork child being waited for, or 0 */
  _Atomic int running;        /* a thread runs for this index */
  _Atomic int exited;         /* its thread returned, not yet joined */
  _Atomic unsigned generation;
  /* the mailbox: blocks other threads give this index to free */
  pthread_mutex_t mb_lock;
  struct slot *mb;
  size_t mb_head, mb_count;
  _Atomic uint64_t mb_n;
  /* owned by the running thread (handed over through join) */
  pthread_t tid;
  unsigned index;
  uint64_t rng;
  struct slot *slots;
  size_t live_bytes;
  uint64_t budget;  /* ops claimed and not yet done */
  uint64_t serial;
  uint64_t counts[OP_NCOUNTED];
  uint64_t bytes;   /* bytes requested in total */
  uint64_t started; /* threads run for this index */
} __attribute__((aligned(64)));

static _Atomic int g_stop;
static _Atomic uint64_t g_claimed;  /* ops handed out to threads */
static _Atomic uint64_t g_main_hb;
static _Atomic int g_main_state;
static _Atomic int g_monitor_stop;
static bool g_in_child;
static uint64_t g_start_ns;
static size_t g_page;
static __thread struct worker *t_self;

/* ---- small utilities ------------------------------------------------- */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static uint64_t rnd(struct worker *w) { /* splitmix64 */
  uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t below(struct worker *w, uint64_t n) {
  return (uint64_t)(((unsigned __int128)rnd(w) * n) >> 64);
}

static bool percent(struct worker *w, unsigned pct) {
  return below(w, 100) < pct;
}

/* Formats into a stack buffer and write()s: usable where stdio is not. */
static void __attribute__((format(printf, 2, 3)))
fdprint(int fd, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  const char *q = buf;
  while (n > 0) {
    ssize_t k = write(fd, q, (size_t)n);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      return;
    }
    q += k;
    n -= (int)k;
  }
}

static void *map_zeroed(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fdprint(2, "%s: cannot map %zu bytes for bookkeeping: %s\n", ST_PROG,
            bytes, strerror(errno));
    _exit(EXIT_FAIL);
  }
  return p;
}

/* Reads a /proc file into buf (NUL-terminated) without stdio. */
static size_t read_proc(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  size_t n = 0;
  if (fd < 0) {
    buf[0] = 0;
    return 0;
  }
  while (n + 1 < cap) {
    ssize_t k = read(fd, buf + n, cap - 1 - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    n += (size_t)k;
  }
  close(fd);
  buf[n] = 0;
  return n;
}

static uint64_t rss_kib(void) {
  char buf[256];
  unsigned long long size = 0, res = 0;
  read_proc("/proc/self/statm", buf, sizeof buf);
  if (sscanf(buf, "%llu %llu", &size, &res) != 2) return 0;
  return res * (g_page / 1024);
}

static uint64_t status_kib(const char *key) {
  char buf[8192];
  read_proc("/proc/self/status", buf, sizeof buf);
  const char *p = strstr(buf, key);
  if (p == NULL) return 0;
  return strtoull(p + strlen(key), NULL, 10);
}

/* ---- failure reports ------------------------------------------------- */
static _Atomic int g_failed;
static char g_report[8192];
static size_t g_report_len;

static void __attribute__((format(printf, 1, 2))) rep(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(g_report + g_report_len, sizeof g_report - g_report_len,
                    fmt, ap);
  va_end(ap);
  if (n > 0) {
    g_report_len += (size_t)n;
    if (g_report_len >= sizeof g_report) g_report_len = sizeof g_report - 1;
  }
}

/* Only the first failing thread reports; the others wait for the exit. */
static void fail_begin(void) {
  if (atomic_exchange(&g_failed, 1)) {
    for (;;) pause();
  }
  g_report_len = 0;
  if (g_in_child)
    rep("%s: FAILED in fork child (pid %ld): ", ST_PROG, (long)getpid());
  else
    rep("%s: FAILED: ", ST_PROG);
}

static void json_string(int fd, const char *s, size_t n) {
  char buf[2 * sizeof g_report];
  size_t k = 0;
  buf[k++] = '"';
  for (size_t i = 0; i < n && k + 8 < sizeof buf; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      buf[k++] = '\\';
      buf[k++] = (char)c;
    } else if (c == '\n') {
      buf[k++] = '\\';
      buf[k++] = 'n';
    } else if (c < 0x20) {
      k += (size_t)snprintf(buf + k, 8, "\\u%04x", c);
    } else {
      buf[k++] = (char)c;
    }
  }
  buf[k++] = '"';
  ssize_t ignored = write(fd, buf, k);
  (void)ignored;
}

static struct worker *workers;

static void __attribute__((noreturn)) fail_end(void) {
  /* no fork child may outlive a failed run */
  if (!g_in_child && workers != NULL)
    for (unsigned i = 0; i < cfg.threads; i++) {
      pid_t c = atomic_load(&workers[i].child);
      if (c > 0) kill(c, SIGKILL);
    }
  rep("  (seed 0x%" PRIx64 "; rerun with --seed 0x%" PRIx64 ")\n", cfg.seed,
      cfg.seed);
  ssize_t ignored = write(2, g_report, g_report_len);
  (void)ignored;
  if (cfg.json && !g_in_child) {
    fdprint(1, "{\"tool\":\"%s\",\"api\":\"%s\",\"result\":\"fail\","
               "\"errors\":1,\"error\":",
            ST_PROG, ST_API);
    json_string(1, g_report, g_report_len);
    fdprint(1, "}\n");
  }
  _exit(EXIT_FAIL);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
fail(const char *fmt, ...) {
  fail_begin();
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(g_report + g_report_len, sizeof g_report - g_report_len,
                    fmt, ap);
  va_end(ap);
  if (n > 0) g_report_len += (size_t)n;
  if (g_report_len >= sizeof g_report) g_report_len = sizeof g_report - 1;
  rep("\n");
  fail_end();
}

static const char *who(void) {
  static __thread char buf[48];
  if (t_self)
    snprintf(buf, sizeof buf, "thread %u", t_self->index);
  else
    snprintf(buf, sizeof buf, "main thread");
  return buf;
}

/* A crash (or an abort in the allocator) is reported with what the thread
 * was doing, and the exit status is 1 like any failure.  Sanitizer builds
 * keep their own, better, reports. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ST_SANITIZED 1
#endif
#endif

#ifndef ST_SANITIZED
static void on_crash(int sig) {
  fail_begin();
  rep("signal %d (%s) in %s", sig, strsignal(sig), who());
  if (t_self) {
    int st = atomic_load(&t_self->state);
    rep(" during %s", op_name[st >= 0 && st < OP_NSTATES ? st : 0]);
    uintptr_t p = atomic_load(&t_self->cur_ptr);
    if (p) rep(" of %#" PRIxPTR, p);
    size_t sz = atomic_load(&t_self->cur_size);
    if (sz) rep(" size %zu", sz);
    rep(" after %" PRIu64 " ops", (uint64_t)atomic_load(&t_self->ops));
  }
  rep("\n");
  fail_end();
}

#endif

static void catch_crashes(void) {
#ifndef ST_SANITIZED
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction(sigs[i], &sa, NULL);
#endif
}

/* ---- patterns -------------------------------------------------------- */
static uint64_t block_hash(const void *p, size_t size, uint64_t tag) {
  return mix64((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL ^
               mix64(size ^ cfg.seed) ^ tag * 0xd6e8feb86659fd93ULL);
}

static inline uint64_t pat_word(uint64_t h, uint64_t i) {
  uint64_t x = (h ^ i) * 0x9e3779b97f4a7c15ULL;
  return x ^ (x >> 29);
}

static unsigned char pat_byte(uint64_t h, size_t off) {
  uint64_t x = pat_word(h, off / 8);
  unsigned char b[8];
  memcpy(b, &x, 8);
  return b[off % 8];
}

static void pat_fill(unsigned char *p, size_t n, uint64_t h) {
  size_t nw = n / 8;
  for (size_t i = 0; i < nw; i++) {
    uint64_t x = pat_word(h, i);
    memcpy(p + 8 * i, &x, 8);
  }
  if (n % 8) {
    uint64_t x = pat_word(h, nw);
    memcpy(p + 8 * nw, &x, n % 8);
  }
}

/* Offset of the first byte that differs from the pattern, or n. */
static size_t pat_mismatch(const unsigned char *p, size_t n, uint64_t h) {
  size_t nw = n / 8;
  for (size_t i = 0; i < nw; i++) {
    uint64_t x;
    memcpy(&x, p + 8 * i, 8);
    if (x != pat_word(h, i)) {
      for (size_t o = 8 * i;; o++)
        if (p[o] != pat_byte(h, o)) return o;
    }
  }
  for (size_t o = 8 * nw; o < n; o++)
    if (p[o] != pat_byte(h, o)) return o;
  return n;
}

static size_t zero_mismatch(const unsigned char *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, p + i, 8);
    if (x != 0) break;
  }
  for (; i < n; i++)
    if (p[i] != 0) return i;
  return n;
}

/* Reports bytes around off: expected (pattern h, or zeros if !use_pat)
 * against found. */
static void rep_bytes(const unsigned char *p, size_t n, uint64_t h,
                      bool use_pat, size_t off) {
  size_t from = off & ~(size_t)7, to = from + 16;
  if (to > n) to = n;
  size_t bad = 0;
  for (size_t o = off; o < n; o++)
    if (p[o] != (use_pat ? pat_byte(h, o) : 0)) bad++;
  rep("  %zu byte(s) differ from offset %zu on\n  expected at +%zu:", bad, off,
      from);
  for (size_t o = from; o < to; o++)
    rep(" %02x", use_pat ? pat_byte(h, o) : 0);
  rep("\n  found    at +%zu:", from);
  for (size_t o = from; o < to; o++) rep(" %02x", p[o]);
  rep("\n");
}

static void rep_block(const struct slot *s) {
  rep("block %p size %zu (%s", (void *)s->p, s->size, kind_name[s->kind]);
  if (s->align) rep(" alignment %u", s->align);
  rep(" by thread %u, allocation #%" PRIu64 ")", (unsigned)(s->tag >> 48),
      s->tag & ((UINT64_C(1) << 48) - 1));
}

static void check_block(const struct slot *s, const char *when) {
  size_t off = pat_mismatch(s->p, s->size, s->hash);
  if (off == s->size) return;
  fail_begin();
  rep("corrupted ");
  rep_block(s);
  rep(", found by %s %s: offset %zu expected 0x%02x found 0x%02x\n", who(),
      when, off, pat_byte(s->hash, off), s->p[off]);
  rep_bytes(s->p, s->size, s->hash, true, off);
  fail_end();
}

/* Checks a pointer fresh from the allocator. */
static void check_new(unsigned char *p, size_t size, size_t align,
                      const char *call) {
  size_t need = align;
  if (need == 0) {
    if (cfg.min_align)
      need = cfg.min_align;
    else if (size >= 16)
      need = 16;
    else {
      need = 1;
      while (need * 2 <= size) need *= 2;
    }
  } else if (cfg.min_align > need) {
    need = cfg.min_align;
  }
  if ((uintptr_t)p & (need - 1))
    fail("%s in %s returned %p, not aligned to %zu bytes", call, who(),
         (void *)p, need);
  atomic_store_explicit(&t_self->state, OP_USABLE, memory_order_relaxed);
  size_t us = ST_USABLE(p);
  if (us < size)
    fail("malloc_usable_size(%p) = %zu in %s, less than the %zu bytes asked "
         "of %s", (void *)p, us, who(), size, call);
}

/* ---- sizes ----------------------------------------------------------- */
static size_t log_uniform(struct worker *w, size_t lo, size_t hi) {
  unsigned lb = 63 - (unsigned)__builtin_clzll(lo);
  unsigned hb = 63 - (unsigned)__builtin_clzll(hi);
  unsigned e = lb + (unsigned)below(w, hb - lb + 1);
  size_t v = ((size_t)1 << e) + below(w, (size_t)1 << e);
  return v < lo ? lo : v > hi ? hi : v;
}

static size_t pick_size(struct worker *w) {
  uint64_t r = below(w, 1000);
  switch (cfg.sizes) {
  case SZ_SMALL:
    if (r < 5) return 0;
    return log_uniform(w, 1, 256);
  case SZ_MIXED:
    if (r < 3) return 0;
    if (r < 850) return log_uniform(w, 1, 512);
    if (r < 970) return log_uniform(w, 513, 32 << 10);
    return log_uniform(w, 32 << 10, 1 << 20);
  case SZ_LARGE:
    return log_uniform(w, 32 << 10, 4 << 20);
  case SZ_POWER: {
    /* Pareto, alpha 0.8: P(size > s) = (16 / (s + 15)) ^ 0.8 */
    double u = ((double)(rnd(w) >> 11) + 1.0) * 0x1.0p-53;
    double s = 16.0 * pow(u, -1.0 / 0.8) - 15.0;
    if (s > (double)(8 << 20)) s = (double)(8 << 20);
    return s < 1.0 ? 1 : (size_t)s;
  }
  case SZ_SERVER: {
    static const size_t objs[] = {24, 32, 40, 48, 64, 80, 96, 128, 192, 256};
    static const size_t bufs[] = {1024, 2048, 4096, 8192, 16384};
    if (r < 600) return objs[below(w, sizeof objs / sizeof objs[0])];
    if (r < 800) return 1 + below(w, 200); /* strings */
    if (r < 950) return bufs[below(w, sizeof bufs / sizeof bufs[0])];
    if (r < 990) return log_uniform(w, 16 << 10, 256 << 10);
    return log_uniform(w, 256 << 10, 2 << 20);
  }
  }
  return 1;
}

/* ---- one allocation and one free -------------------------------------- */
static void begin_op(struct worker *w, enum op op, size_t size,
                     const void *p) {
  atomic_store_explicit(&w->state, op, memory_order_relaxed);
  atomic_store_explicit(&w->cur_size, size, memory_order_relaxed);
  atomic_store_explicit(&w->cur_ptr, (uintptr_t)p, memory_order_relaxed);
}

static void end_op(struct worker *w, enum op op) {
  w->counts[op]++;
  atomic_store_explicit(&w->ops, atomic_load_explicit(&w->ops,
                        memory_order_relaxed) + 1, memory_order_relaxed);
  atomic_store_explicit(&w->state, OP_NONE, memory_order_relaxed);
}

static size_t pick_align(struct worker *w) {
  unsigned e = below(w, 10) ? 3 + (unsigned)below(w, 10)   /* 8 .. 4 KiB */
                            : 13 + (unsigned)below(w, 9);  /* 8 KiB .. 1 MiB */
  return (size_t)1 << e;
}

/* Allocates a block into *s (which is empty); false if malloc(0) gave
 * NULL, which is allowed. */
static bool alloc_block(struct worker *w, struct slot *s, size_t size) {
  unsigned char *p = NULL;
  enum kind kind = K_MALLOC;
  size_t align = 0, cm = 0, cn = 0;
  const char *how;
  if (percent(w, cfg.align)) {
    uint64_t r = below(w, 100);
    align = pick_align(w);
    if (size > (1 << 20) && align > 4096) align = 4096;
    /* No zero-byte aligned requests: what they return is the
     * implementation's choice (jemalloc 5.3.0 gives memalign(1024, 0) a
     * pointer aligned to 16 only, and is right to: there are no bytes). */
    if (size == 0) size = 1;
    if (r < 40) {
      kind = K_POSIX_MEMALIGN;
      how = "posix_memalign";
      begin_op(w, OP_POSIX_MEMALIGN, size, NULL);
      void *q = NULL;
      int rc = ST_POSIX_MEMALIGN(&q, align, size);
      if (rc != 0)
        fail("posix_memalign(alignment %zu, size %zu) failed in %s: %s",
             align, size, who(), strerror(rc));
      p = q;
      end_op(w, OP_POSIX_MEMALIGN);
    } else if (r < 70) {
      kind = K_ALIGNED_ALLOC;
      how = "aligned_alloc";
      size = (size + align - 1) & ~(align - 1); /* C11: a multiple */
      if (size == 0) size = align;
      begin_op(w, OP_ALIGNED_ALLOC, size, NULL);
      p = ST_ALIGNED_ALLOC(align, size);
      end_op(w, OP_ALIGNED_ALLOC);
    } else if (r < 92) {
      kind = K_MEMALIGN;
      how = "memalign";
      begin_op(w, OP_MEMALIGN, size, NULL);
      p = ST_MEMALIGN(align, size);
      end_op(w, OP_MEMALIGN);
    } else {
      kind = K_VALLOC;
      how = "valloc";
      align = g_page;
      if (size == 0) size = 1;
      begin_op(w, OP_VALLOC, size, NULL);
      p = ST_VALLOC(size);
      end_op(w, OP_VALLOC);
    }
  } else if (percent(w, 10)) {
    kind = K_CALLOC;
    how = "calloc";
    size_t m = 1, n = size;
    if (size > 1 && below(w, 2)) { /* split into nmemb * size */
      static const size_t f[] = {2, 3, 4, 8, 12, 16, 24};
      size_t k = f[below(w, 7)];
      if (size >= k) {
        m = size / k;
        n = k;
        size = m * n;
      }
    }
    begin_op(w, OP_CALLOC, size, NULL);
    p = ST_CALLOC(m, n);
    end_op(w, OP_CALLOC);
    cm = m;
    cn = n;
    if (p != NULL) {
      size_t off = zero_mismatch(p, size);
      if (off < size) {
        fail_begin();
        rep("calloc(%zu, %zu) returned %p in %s with non-zero memory at "
            "offset %zu: expected 0x00 found 0x%02x\n", m, n, (void *)p,
            who(), off, p[off]);
        rep_bytes(p, size, 0, false, off);
        fail_end();
      }
    }
  } else {
    how = "malloc";
    begin_op(w, OP_MALLOC, size, NULL);
    p = ST_MALLOC(size);
    end_op(w, OP_MALLOC);
  }
  int err = errno;
  char call[96];
  if (kind == K_CALLOC)
    snprintf(call, sizeof call, "calloc(%zu, %zu)", cm, cn);
  else if (kind == K_VALLOC || align == 0)
    snprintf(call, sizeof call, "%s(%zu)", how, size);
  else if (kind == K_POSIX_MEMALIGN)
    snprintf(call, sizeof call, "%s(&p, %zu, %zu)", how, align, size);
  else
    snprintf(call, sizeof call, "%s(%zu, %zu)", how, align, size);
  if (p == NULL) {
    if (size == 0) return false;
    fail("%s returned NULL in %s (errno %d: %s)", call, who(), err,
         strerror(err));
  }
  check_new(p, size, align, call);
  s->p = p;
  s->size = size;
  s->kind = kind;
  s->align = (uint32_t)align;
  s->tag = ((uint64_t)w->index << 48) | (++w->serial & ((UINT64_C(1) << 48) - 1));
  s->hash = block_hash(p, size, s->tag);
  pat_fill(p, size, s->hash);
  w->bytes += size;
  return true;
}

/* Checks and frees a block; remote: it came through the mailbox. */
static void free_block(struct worker *w, struct slot *s, bool remote) {
  check_block(s, remote ? "before free (handed over)" : "before free");
  enum op op = remote ? OP_FREE_REMOTE : OP_FREE;
  bool sized = ST_HAVE_SIZED_FREE && below(w, 4) == 0;
  if (sized && !remote) op = OP_FREE_SIZED;
  begin_op(w, op, s->size, s->p);
  if (sized && s->kind == K_ALIGNED_ALLOC)
    ST_FREE_ALIGNED_SIZED(s->p, s->align, s->size);
  else if (sized && (s->kind == K_MALLOC || s->kind == K_CALLOC ||
                     s->kind == K_REALLOC))
    ST_FREE_SIZED(s->p, s->size);
  else
    ST_FREE(s->p);
  end_op(w, op);
  s->p = NULL;
}

static void release_slot(struct worker *w, struct slot *s) {
  w->live_bytes -= s->size;
  atomic_store_explicit(&w->live, atomic_load_explicit(&w->live,
                        memory_order_relaxed) - 1, memory_order_relaxed);
  s->p = NULL;
}

static void take_slot(struct worker *w, struct slot *s) {
  w->live_bytes += s->size;
  atomic_store_explicit(&w->live, atomic_load_explicit(&w->live,
                        memory_order_relaxed) + 1, memory_order_relaxed);
}

static void realloc_block(struct worker *w, struct slot *s) {
  check_block(s, "before realloc");
  size_t old = s->size, size;
  uint64_t r = below(w, 4);
  if (r == 0)
    size = old + old / 2 + 1 + below(w, 64); /* grow */
  else if (r == 1)
    size = old / 2 + 1;                      /* shrink */
  else
    size = pick_size(w);
  if (size == 0) size = 1;
  if (size > ((size_t)16 << 20)) size = (size_t)16 << 20;
  uintptr_t olda = (uintptr_t)s->p; /* for reports only */
  begin_op(w, OP_REALLOC, size, s->p);
  unsigned char *p = ST_REALLOC(s->p, size);
  end_op(w, OP_REALLOC);
  if (p == NULL)
    fail("realloc(%#" PRIxPTR ", %zu) returned NULL in %s (errno %d: %s); "
         "the block was %zu bytes", olda, size, who(), errno, strerror(errno),
         old);
  size_t keep = old < size ? old : size;
  size_t off = pat_mismatch(p, keep, s->hash);
  if (off < keep) {
    fail_begin();
    rep("realloc(%#" PRIxPTR ", %zu) -> %p in %s did not keep the contents "
        "of ", olda, size, (void *)p, who());
    rep_block(s);
    rep(": offset %zu expected 0x%02x found 0x%02x\n", off,
        pat_byte(s->hash, off), p[off]);
    rep_bytes(p, keep, s->hash, true, off);
    fail_end();
  }
  check_new(p, size, 0, "realloc");
  w->live_bytes += size - old;
  w->bytes += size;
  s->p = p;
  s->size = size;
  s->kind = K_REALLOC;
  s->align = 0;
  s->tag = ((uint64_t)w->index << 48) | (++w->serial & ((UINT64_C(1) << 48) - 1));
  s->hash = block_hash(p, size, s->tag);
  pat_fill(p, size, s->hash);
}

/* ---- mailboxes ------------------------------------------------------- */
static bool post(struct worker *to, const struct slot *s) {
  bool ok = false;
  pthread_mutex_lock(&to->mb_lock);
  if (to->mb_count < MAILBOX_CAP) {
    to->mb[(to->mb_head + to->mb_count) % MAILBOX_CAP] = *s;
    to->mb_count++;
    atomic_store_explicit(&to->mb_n, to->mb_count, memory_order_relaxed);
    ok = true;
  }
  pthread_mutex_unlock(&to->mb_lock);
  return ok;
}

/* Frees (after checking) what other threads posted to w's mailbox; the
 * freeing is done by the calling thread, which is w's or main. */
static void drain(struct worker *w, struct worker *mb) {
  struct slot got[BATCH];
  size_t n;
  do {
    n = 0;
    begin_op(w, OP_MAILBOX, 0, NULL);
    pthread_mutex_lock(&mb->mb_lock);
    while (n < BATCH && mb->mb_count > 0) {
      got[n++] = mb->mb[mb->mb_head];
      mb->mb_head = (mb->mb_head + 1) % MAILBOX_CAP;
      mb->mb_count--;
    }
    atomic_store_explicit(&mb->mb_n, mb->mb_count, memory_order_relaxed);
    pthread_mutex_unlock(&mb->mb_lock);
    atomic_store_explicit(&w->state, OP_NONE, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) free_block(w, &got[i], true);
  } while (n == BATCH);
}

static void handoff(struct worker *w, struct slot *s) {
  struct worker *to = &workers[(w->index + 1 + below(w, cfg.threads - 1)) %
                               cfg.threads];
  if (post(to, s)) {
    w->counts[OP_HANDOFF]++;
    release_slot(w, s);
  } else {
    w->live_bytes -= s->size;
    atomic_store_explicit(&w->live, atomic_load_explicit(&w->live,
                          memory_order_relaxed) - 1, memory_order_relaxed);
    free_block(w, s, false);
  }
}

/* ---- a thread's work ------------------------------------------------- */
static void free_slot(struct worker *w, struct slot *s) {
  w->live_bytes -= s->size;
  atomic_store_explicit(&w->live, atomic_load_explicit(&w->live,
                        memory_order_relaxed) - 1, memory_order_relaxed);
  free_block(w, s, false);
}

static void one_op(struct worker *w) {
  unsigned short_pct = cfg.sizes == SZ_SERVER ? 30 : 5;
  if (percent(w, short_pct)) {
    struct slot tmp = {0};
    if (alloc_block(w, &tmp, pick_size(w))) {
      free_block(w, &tmp, false);
      w->counts[OP_SHORT]++;
    }
    return;
  }
  struct slot *s = &w->slots[below(w, cfg.slots)];
  if (s->p == NULL) {
    size_t size = pick_size(w);
    if (w->live_bytes + size > cfg.max_live) {
      /* over budget: free the next live block instead */
      for (size_t k = 0; k < cfg.slots; k++) {
        struct slot *t = &w->slots[(size_t)(s - w->slots + k) % cfg.slots];
        if (t->p != NULL) {
          free_slot(w, t);
          return;
        }
      }
    }
    if (alloc_block(w, s, size)) take_slot(w, s);
    return;
  }
  if (percent(w, cfg.realloc_pct)) {
    realloc_block(w, s);
  } else if (cfg.threads > 1 && !g_in_child && percent(w, cfg.cross)) {
    handoff(w, s);
  } else {
    free_slot(w, s);
  }
}

static void free_all_slots(struct worker *w) {
  for (size_t i = 0; i < cfg.slots; i++)
    if (w->slots[i].p != NULL) free_slot(w, &w->slots[i]);
}

/* In a child forked from a running worker: only this thread exists. */
static void __attribute__((noreturn)) child_main(struct worker *w) {
  g_in_child = true;
  for (size_t i = 0; i < cfg.slots; i++)
    if (w->slots[i].p != NULL) check_block(&w->slots[i], "in fork child");
  for (int i = 0; i < 1000; i++) one_op(w);
  free_all_slots(w);
  _exit(0);
}

static void do_fork(struct worker *w) {
  begin_op(w, OP_FORK, 0, NULL);
  pid_t pid = fork();
  if (pid < 0) fail("fork() failed in %s: %s", who(), strerror(errno));
  if (pid == 0) child_main(w);
  atomic_store(&w->child, pid);
  end_op(w, OP_FORK);
  begin_op(w, OP_FORK_WAIT, 0, NULL);
  uint64_t t0 = now_ns();
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR)
      fail("waitpid(%ld) failed in %s: %s", (long)pid, who(),
           strerror(errno));
    if (now_ns() - t0 > (uint64_t)cfg.fork_timeout_s * 1000000000u) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      atomic_store(&w->child, 0);
      fail("fork child %ld (forked by %s) hung: still running after %u s "
           "(--fork-timeout); killed it", (long)pid, who(),
           cfg.fork_timeout_s);
    }
    atomic_fetch_add_explicit(&w->heartbeat, 1, memory_order_relaxed);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&w->child, 0);
  atomic_store_explicit(&w->state, OP_NONE, memory_order_relaxed);
  if (WIFSIGNALED(st))
    fail("fork child %ld (forked by %s) was killed by signal %d (%s)",
         (long)pid, who(), WTERMSIG(st), strsignal(WTERMSIG(st)));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("fork child %ld (forked by %s) exited with status %d (its report "
         "is above)", (long)pid, who(), WEXITSTATUS(st));
}

/* Takes the next batch of the op budget; false when the run is over. */
static bool claim(struct worker *w) {
  if (atomic_load_explicit(&g_stop, memory_order_relaxed)) return false;
  uint64_t got = atomic_fetch_add(&g_claimed, BATCH);
  uint64_t n = BATCH;
  if (cfg.ops) {
    if (got >= cfg.ops) {
      atomic_store(&g_stop, 1);
      return false;
    }
    if (cfg.ops - got < n) n = cfg.ops - got;
  }
  w->budget = n;
  if (cfg.fork_every && (got + n) / cfg.fork_every != got / cfg.fork_every)
    do_fork(w);
  return true;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  t_self = w;
  unsigned gen = atomic_load(&w->generation);
  w->rng = mix64(cfg.seed ^ ((uint64_t)w->index << 32) ^ gen);
  w->started++;
  uint64_t life = UINT64_MAX, done = 0;
  if (cfg.churn) life = cfg.churn_ops / 2 + below(w, cfg.churn_ops + 1);
  for (;;) {
    if (w->budget == 0 && !claim(w)) break;
    w->budget--;
    if ((done & 15) == 0 && atomic_load_explicit(&w->mb_n,
                                                 memory_order_relaxed))
      drain(w, w);
    one_op(w);
    atomic_fetch_add_explicit(&w->heartbeat, 1, memory_order_relaxed);
    if (++done >= life) {
      /* churn: hand half the blocks to others, leave the rest to the
       * thread that will take this index over */
      begin_op(w, OP_CHURN_EXIT, 0, NULL);
      if (cfg.threads > 1)
        for (size_t i = 0; i < cfg.slots; i++)
          if (w->slots[i].p != NULL && below(w, 2)) handoff(w, &w->slots[i]);
      atomic_store_explicit(&w->state, OP_NONE, memory_order_relaxed);
      atomic_store(&w->exited, 1);
      return NULL;
    }
  }
  begin_op(w, OP_CLEANUP, 0, NULL);
  free_all_slots(w);
  atomic_store_explicit(&w->state, OP_NONE, memory_order_relaxed);
  atomic_store(&w->exited, 1);
  return NULL;
}

static void start_worker(struct worker *w) {
  atomic_store(&w->exited, 0);
  atomic_store(&w->running, 1);
  atomic_store(&g_main_state, 1);
  int rc = pthread_create(&w->tid, NULL, worker_main, w);
  atomic_store(&g_main_state, 0);
  if (rc != 0)
    fail("pthread_create for thread %u failed: %s", w->index, strerror(rc));
}

static void join_worker(struct worker *w) {
  atomic_store(&g_main_state, 2);
  pthread_join(w->tid, NULL);
  atomic_store(&g_main_state, 0);
  atomic_store(&w->running, 0);
  atomic_store(&w->exited, 0);
  t_self = NULL;
}

/* ---- the monitor: progress lines and the watchdog -------------------- */
static uint64_t total_ops(void) {
  uint64_t n = 0;
  for (unsigned i = 0; i < cfg.threads; i++)
    n += atomic_load_explicit(&workers[i].ops, memory_order_relaxed);
  return n;
}

static void *monitor_main(void *arg) {
  (void)arg;
  uint64_t hb[1024 + 1], since[1024 + 1];
  uint64_t t = now_ns(), last_ops = 0, last_t = t, next_line = t + 1000000000u;
  for (unsigned i = 0; i <= cfg.threads; i++) {
    hb[i] = (uint64_t)-1;
    since[i] = t;
  }
  while (!atomic_load(&g_monitor_stop)) {
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    t = now_ns();
    if (!cfg.quiet && t >= next_line) {
      uint64_t ops = total_ops(), live = 0;
      for (unsigned i = 0; i < cfg.threads; i++)
        live += atomic_load_explicit(&workers[i].live, memory_order_relaxed) +
                atomic_load_explicit(&workers[i].mb_n, memory_order_relaxed);
      uint64_t rate = (ops - last_ops) * 1000000000u / (t - last_t + 1);
      uint64_t el = (t - g_start_ns) / 100000000u, rss = rss_kib();
      fdprint(2, "[%4" PRIu64 ".%" PRIu64 "s] %6" PRIu64 ".%03" PRIu64
                 " Mops/s  ops %" PRIu64 "  live %" PRIu64
                 " blocks  rss %" PRIu64 ".%" PRIu64 " MiB\n",
              el / 10, el % 10, rate / 1000000, rate / 1000 % 1000, ops, live,
              rss / 1024, rss % 1024 * 10 / 1024);
      last_ops = ops;
      last_t = t;
      next_line += 1000000000u;
      if (next_line < t) next_line = t + 1000000000u;
    }
    /* watchdog: workers that run, and the main thread */
    bool stuck = false;
    for (unsigned i = 0; i <= cfg.threads; i++) {
      uint64_t h;
      if (i < cfg.threads) {
        if (!atomic_load(&workers[i].running) ||
            atomic_load(&workers[i].exited)) {
          hb[i] = (uint64_t)-1;
          continue;
        }
        h = atomic_load_explicit(&workers[i].heartbeat, memory_order_relaxed);
      } else {
        h = atomic_load(&g_main_hb);
      }
      if (h != hb[i]) {
        hb[i] = h;
        since[i] = t;
      } else if (t - since[i] > (uint64_t)cfg.watchdog_s * 1000000000u) {
        stuck = true;
      }
    }
    if (!stuck) continue;
    fail_begin();
    rep("watchdog: no progress for %u s (--watchdog), deadlock or hang?\n",
        cfg.watchdog_s);
    for (unsigned i = 0; i <= cfg.threads; i++) {
      if (hb[i] == (uint64_t)-1 ||
          t - since[i] <= (uint64_t)cfg.watchdog_s * 1000000000u)
        continue;
      if (i == cfg.threads) {
        static const char *const ms[] = {"its loop", "pthread_create",
                                         "pthread_join", "final cleanup"};
        rep("  main thread stuck in %s\n", ms[atomic_load(&g_main_state) & 3]);
        continue;
      }
      struct worker *w = &workers[i];
      int st = atomic_load(&w->state);
      rep("  thread %u (generation %u) stuck for %" PRIu64 " s in %s", i,
          atomic_load(&w->generation), (t - since[i]) / 1000000000u,
          op_name[st >= 0 && st < OP_NSTATES ? st : 0]);
      uintptr_t p = atomic_load(&w->cur_ptr);
      if (p) rep(" of %p", (void *)p);
      size_t sz = atomic_load(&w->cur_size);
      if (sz) rep(" size %zu", sz);
      rep(" after %" PRIu64 " ops\n", atomic_load(&w->ops));
    }
    fail_end();
  }
  return NULL;
}

/* ---- command line ---------------------------------------------------- */
static void usage(FILE *f) {
  fprintf(f,
"Usage: %s [OPTION]...\n"
"Stress-test %s\nfrom many threads, checking every block.\n"
"\n"
"  --threads N        worker threads (1-1024; default 4)\n"
"  --duration SECONDS stop after this time, 0 for no limit (default 10;\n"
"                     fractions allowed)\n"
"  --ops N            stop after about N operations in all, 0 for no limit\n"
"                     (default 0); the run ends at the first limit reached\n"
"  --sizes KIND       small (0-256 B), mixed (mostly small, some up to\n"
"                     1 MiB; the default), large (32 KiB-4 MiB), power-law\n"
"                     (Pareto tail up to 8 MiB), server-like (fixed object\n"
"                     sizes, strings, I/O buffers, many short-lived blocks)\n"
"  --cross PERCENT    frees done by another thread than the allocating\n"
"                     one, through per-thread mailboxes (default 10)\n"
"  --realloc PERCENT  of ops on a live block, reallocate it (default 10)\n"
"  --align PERCENT    of allocations, use posix_memalign, aligned_alloc,\n"
"                     memalign or valloc with a random power-of-two\n"
"                     alignment (8 B-1 MiB) and check it (default 5)\n"
"  --fork-every N     every N ops in all, one thread forks while the others\n"
"                     run; the child checks its blocks, allocates and frees\n"
"                     and exits; 0 for never (default 0)\n"
"  --fork-timeout S   a fork child still running after S seconds counts as\n"
"                     hung (default 10)\n"
"  --churn            threads exit after a while and new ones take their\n"
"                     place (and their blocks)\n"
"  --churn-ops N      average ops in a thread's life with --churn\n"
"                     (default 20000)\n"
"  --seed N           seed for patterns and choices (default: random; the\n"
"                     seed is printed so a failing run can be repeated)\n"
"  --slots N          live blocks a thread keeps at most (default 4096)\n"
"  --max-live MIB     bytes a thread keeps live at most (default 64)\n"
"  --min-align N      alignment every block must have (power of two; default\n"
"                     16 for blocks of 16 bytes or more, and the largest\n"
"                     power of two not above the size for smaller ones)\n"
"  --watchdog S       report a deadlock when a thread makes no progress for\n"
"                     S seconds (default 20)\n"
"  --json             print the summary as one JSON object on stdout\n"
"  --quiet            no progress line every second on stderr\n"
"  --help             this text\n"
"\n"
"Every block holds a pattern made from its address, size and seed, written\n"
"when it is allocated and checked in full before it is freed and after it\n"
"is reallocated; alignment, malloc_usable_size and calloc zeroing are\n"
"checked too.  Exit status: 0 all checks passed, 1 a check failed (the\n"
"report on stderr says what, where and in which thread), 2 bad usage.\n",
          ST_PROG,
#ifdef STRESS_PALLET_API
          "pallet through its pallet_ API"
#else
          "the malloc in use (pick one with LD_PRELOAD)"
#endif
  );
}

static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s (see --help)\n", ST_PROG, buf);
  exit(EXIT_USAGE);
}

static uint64_t parse_uint(const char *opt, const char *s, uint64_t lo,
                           uint64_t hi) {
  char *end;
  errno = 0;
  if (*s == '-' || *s == 0) goto bad;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *end) goto bad;
  if (v < lo || v > hi) goto bad;
  return v;
bad:
  usage_error("%s: expected an integer from %" PRIu64 " to %" PRIu64
              ", got '%s'", opt, lo, hi, s);
}

enum {
  O_THREADS = 256, O_DURATION, O_OPS, O_SIZES, O_CROSS, O_REALLOC, O_ALIGN,
  O_FORK, O_FORK_TIMEOUT, O_CHURN, O_CHURN_OPS, O_SEED, O_SLOTS, O_MAXLIVE,
  O_MINALIGN, O_WATCHDOG, O_JSON, O_QUIET, O_HELP
};

static void parse_args(int argc, char **argv) {
  static const struct option opts[] = {
      {"threads", required_argument, NULL, O_THREADS},
      {"duration", required_argument, NULL, O_DURATION},
      {"ops", required_argument, NULL, O_OPS},
      {"sizes", required_argument, NULL, O_SIZES},
      {"cross", required_argument, NULL, O_CROSS},
      {"realloc", required_argument, NULL, O_REALLOC},
      {"align", required_argument, NULL, O_ALIGN},
      {"fork-every", required_argument, NULL, O_FORK},
      {"fork-timeout", required_argument, NULL, O_FORK_TIMEOUT},
      {"churn", no_argument, NULL, O_CHURN},
      {"churn-ops", required_argument, NULL, O_CHURN_OPS},
      {"seed", required_argument, NULL, O_SEED},
      {"slots", required_argument, NULL, O_SLOTS},
      {"max-live", required_argument, NULL, O_MAXLIVE},
      {"min-align", required_argument, NULL, O_MINALIGN},
      {"watchdog", required_argument, NULL, O_WATCHDOG},
      {"json", no_argument, NULL, O_JSON},
      {"quiet", no_argument, NULL, O_QUIET},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  bool seeded = false;
  opterr = 0;
  for (;;) {
    int prev = optind;
    int c = getopt_long(argc, argv, ":h", opts, NULL);
    if (c == -1) break;
    const char *a = optarg;
    switch (c) {
    case O_THREADS: cfg.threads = (unsigned)parse_uint("--threads", a, 1, 1024); break;
    case O_DURATION: {
      char *end;
      errno = 0;
      double d = strtod(a, &end);
      if (errno || *end || *a == 0 || !(d >= 0.0) || d > 1e7)
        usage_error("--duration: expected seconds from 0 to 10000000, "
                    "got '%s'", a);
      cfg.duration_ms = (uint64_t)(d * 1000.0 + 0.5);
      if (d > 0.0 && cfg.duration_ms == 0) cfg.duration_ms = 1;
      break;
    }
    case O_OPS: cfg.ops = parse_uint("--ops", a, 0, UINT64_MAX / 2); break;
    case O_SIZES: {
      size_t k, n = sizeof sizes_name / sizeof sizes_name[0];
      for (k = 0; k < n; k++)
        if (strcmp(a, sizes_name[k]) == 0) break;
      if (k == n)
        usage_error("--sizes: expected small, mixed, large, power-law or "
                    "server-like, got '%s'", a);
      cfg.sizes = (enum sizes)k;
      break;
    }
    case O_CROSS: cfg.cross = (unsigned)parse_uint("--cross", a, 0, 100); break;
    case O_REALLOC: cfg.realloc_pct = (unsigned)parse_uint("--realloc", a, 0, 100); break;
    case O_ALIGN: cfg.align = (unsigned)parse_uint("--align", a, 0, 100); break;
    case O_FORK: cfg.fork_every = parse_uint("--fork-every", a, 0, UINT64_MAX / 2); break;
    case O_FORK_TIMEOUT: cfg.fork_timeout_s = (unsigned)parse_uint("--fork-timeout", a, 1, 86400); break;
    case O_CHURN: cfg.churn = true; break;
    case O_CHURN_OPS: cfg.churn_ops = parse_uint("--churn-ops", a, 1, UINT64_MAX / 4); break;
    case O_SEED: cfg.seed = parse_uint("--seed", a, 0, UINT64_MAX); seeded = true; break;
    case O_SLOTS: cfg.slots = parse_uint("--slots", a, 1, (uint64_t)1 << 24); break;
    case O_MAXLIVE: cfg.max_live = parse_uint("--max-live", a, 1, 1 << 20) << 20; break;
    case O_MINALIGN:
      cfg.min_align = parse_uint("--min-align", a, 1, 1 << 20);
      if (cfg.min_align & (cfg.min_align - 1))
        usage_error("--min-align: expected a power of two, got '%s'", a);
      break;
    case O_WATCHDOG: cfg.watchdog_s = (unsigned)parse_uint("--watchdog", a, 1, 86400); break;
    case O_JSON: cfg.json = true; break;
    case O_QUIET: cfg.quiet = true; break;
    case 'h':
    case O_HELP: usage(stdout); exit(0);
    case ':': usage_error("option '%s' needs a value", argv[prev]);
    default: usage_error("unknown option '%s'", argv[prev]);
    }
  }
  if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
  if (cfg.duration_ms == 0 && cfg.ops == 0)
    usage_error("--duration 0 needs an --ops limit");
  if (!seeded) cfg.seed = mix64(now_ns() ^ ((uint64_t)getpid() << 32));
}

/* ---- the run and its report ------------------------------------------ */
static void print_summary(double secs, int heap_check) {
  uint64_t tot[OP_NCOUNTED] = {0}, ops = 0, bytes = 0, started = 0;
  for (unsigned i = 0; i < cfg.threads; i++) {
    for (int k = 0; k < OP_NCOUNTED; k++) tot[k] += workers[i].counts[k];
    ops += atomic_load(&workers[i].ops);
    bytes += workers[i].bytes;
    started += workers[i].started;
  }
  uint64_t hwm = status_kib("VmHWM:");
  const char *pre = getenv("LD_PRELOAD");
  const char *hc = heap_check < 0 ? "absent" : "passed";
  if (cfg.json) {
    printf("{\"tool\":\"%s\",\"api\":\"%s\",\"preload\":", ST_PROG, ST_API);
    fflush(stdout);
    json_string(1, pre ? pre : "", pre ? strlen(pre) : 0);
    printf(",\"threads\":%u,\"duration_s\":%.3f,\"ops_limit\":%" PRIu64
           ",\"sizes\":\"%s\",\"cross_pct\":%u,\"realloc_pct\":%u,"
           "\"align_pct\":%u,\"fork_every\":%" PRIu64 ",\"churn\":%s,"
           "\"seed\":\"0x%" PRIx64 "\",\"elapsed_s\":%.3f,\"counts\":{",
           cfg.threads, cfg.duration_ms / 1000.0, cfg.ops,
           sizes_name[cfg.sizes], cfg.cross, cfg.realloc_pct, cfg.align,
           cfg.fork_every, cfg.churn ? "true" : "false", cfg.seed, secs);
    for (int k = 1; k < OP_NCOUNTED; k++)
      printf("%s\"%s\":%" PRIu64, k > 1 ? "," : "", op_name[k], tot[k]);
    printf("},\"total_ops\":%" PRIu64 ",\"ops_per_s\":%.0f,\"bytes_requested\":%"
           PRIu64 ",\"threads_started\":%" PRIu64 ",\"per_thread\":[",
           ops, ops / secs, bytes, started);
    for (unsigned i = 0; i < cfg.threads; i++)
      printf("%s{\"thread\":%u,\"ops\":%" PRIu64 ",\"ops_per_s\":%.0f,"
             "\"threads_started\":%" PRIu64 "}", i ? "," : "", i,
             (uint64_t)atomic_load(&workers[i].ops),
             atomic_load(&workers[i].ops) / secs, workers[i].started);
    printf("],\"peak_rss_kib\":%" PRIu64 ",\"heap_check\":\"%s\","
           "\"errors\":0,\"result\":\"pass\"}\n", hwm, hc);
    return;
  }
  printf("%s: %u threads, %.2f s, sizes %s, cross %u%%, realloc %u%%, "
         "align %u%%, fork-every %" PRIu64 ", churn %s, seed 0x%" PRIx64 "\n",
         ST_PROG, cfg.threads, secs, sizes_name[cfg.sizes], cfg.cross,
         cfg.realloc_pct, cfg.align, cfg.fork_every, cfg.churn ? "on" : "off",
         cfg.seed);
  printf("allocator: %s%s%s\n", ST_API, pre ? ", LD_PRELOAD=" : "",
         pre ? pre : "");
  for (int k = 1; k < OP_NCOUNTED; k++)
    printf("  %-16s %14" PRIu64 "\n", op_name[k], tot[k]);
  printf("  %-16s %14" PRIu64 "  (%.0f ops/s)\n", "total ops", ops,
         ops / secs);
  printf("  %-16s %14" PRIu64 "\n", "bytes requested", bytes);
  for (unsigned i = 0; i < cfg.threads; i++)
    printf("  thread %-9u %14" PRIu64 "  (%.0f ops/s, %" PRIu64
           " thread(s) run)\n", i, (uint64_t)atomic_load(&workers[i].ops),
           atomic_load(&workers[i].ops) / secs, workers[i].started);
  printf("  peak RSS (VmHWM) %" PRIu64 " KiB\n", hwm);
  printf("  pallet_heap_check: %s\n", hc);
  printf("  errors 0: PASS\n");
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  catch_crashes();
  workers = map_zeroed(sizeof *workers * cfg.threads);
  for (unsigned i = 0; i < cfg.threads; i++) {
    struct worker *w = &workers[i];
    w->index = i;
    pthread_mutex_init(&w->mb_lock, NULL);
    w->mb = map_zeroed(sizeof(struct slot) * MAILBOX_CAP);
    w->slots = map_zeroed(sizeof(struct slot) * cfg.slots);
  }
  if (!cfg.quiet)
    fdprint(2, "%s: %u threads, sizes %s, seed 0x%" PRIx64 "%s%s\n", ST_PROG,
            cfg.threads, sizes_name[cfg.sizes], cfg.seed,
            getenv("LD_PRELOAD") ? ", LD_PRELOAD=" : "",
            getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
  g_start_ns = now_ns();
  pthread_t mon;
  int rc = pthread_create(&mon, NULL, monitor_main, NULL);
  if (rc != 0) fail("pthread_create for the monitor failed: %s", strerror(rc));
  for (unsigned i = 0; i < cfg.threads; i++) start_worker(&workers[i]);

  for (;;) {
    atomic_fetch_add(&g_main_hb, 1);
    uint64_t el = now_ns() - g_start_ns;
    if (cfg.duration_ms && el >= cfg.duration_ms * 1000000u)
      atomic_store(&g_stop, 1);
    if (atomic_load(&g_stop)) break;
    for (unsigned i = 0; i < cfg.threads; i++) {
      struct worker *w = &workers[i];
      if (atomic_load(&w->running) && atomic_load(&w->exited)) {
        join_worker(w);
        if (!atomic_load(&g_stop)) {
          atomic_fetch_add(&w->generation, 1);
          start_worker(w);
        }
      }
    }
    struct timespec ts = {0, cfg.churn ? 1000000 : 5000000};
    nanosleep(&ts, NULL);
  }
  for (unsigned i = 0; i < cfg.threads; i++) {
    atomic_fetch_add(&g_main_hb, 1);
    if (atomic_load(&workers[i].running)) join_worker(&workers[i]);
  }
  double secs = (double)(now_ns() - g_start_ns) / 1e9;
  /* blocks left by churned threads and in the mailboxes: main frees them */
  atomic_store(&g_main_state, 3);
  for (unsigned i = 0; i < cfg.threads; i++) {
    struct worker *w = &workers[i];
    t_self = w;
    free_all_slots(w);
    drain(w, w);
    atomic_fetch_add(&g_main_hb, 1);
  }
  t_self = NULL;
  int hc = -1;
  if (ST_HAVE_HEAP_CHECK()) {
    hc = ST_HEAP_CHECK();
    if (hc != 0)
      fail("pallet_heap_check() found a broken heap invariant after the run "
           "(its report is above)");
  }
  atomic_store(&g_main_state, 0);
  atomic_store(&g_monitor_stop, 1);
  pthread_join(mon, NULL);
  print_summary(secs, hc);
  fflush(stdout);
  return 0;
}
