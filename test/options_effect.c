/*
 * options_effect.c — the program test/options_effect.sh runs under
 * LD_PRELOAD=libpallet.so with PALLET_* variables set, to see that each
 * option does what it says.  It uses only the standard malloc names (the
 * preload provides them); pallet's statistics it finds with dlsym, so the
 * program also runs, and says so, without pallet.
 *
 * Usage: options_effect_prog MODE [ARG]; prints "ok" (and values as
 * name=value lines) on stdout and exits 0 when the mode ran to the end.
 *   work         mixed allocations from two threads, checked
 *   overflow     writes one byte past a 24-byte block, then frees it
 *   overflow-values
 *                in a child each: every byte value but 0xa5 (or, for
 *                most sizes, a few) written one past blocks of 1 B to
 *                5 MiB, then freed; prints what did not abort
 *   large-twice  frees a 300000-byte block, mallocs 100 bytes, frees the
 *                big block again (a double free)
 *   small-twice  the same with 64-byte blocks and a malloc of 64 bytes
 *                between; prints same=1 if that malloc got the freed
 *                block back
 *   uaf [AT]     changes a byte of a freed 64-byte block (at byte AT,
 *                default 40), then allocates that size again (up to 1000
 *                times)
 *   uaf-then twice|trim|evict [AT]
 *                changes a byte of a freed 64-byte block (AT, default 0:
 *                its free key), then frees it again, or calls
 *                malloc_trim, or frees 5000 other 64-byte blocks
 *   wiped-many   6000 blocks freed; then, in a child each, 64 of the last
 *                4000 changed in their first word and freed again;
 *                prints misses=<children that did not abort>
 *   tcache       frees many blocks of many classes on one thread, then
 *                prints tcache=<pallet_stats_get().tcache>
 *   tcache-threads
 *                the same on 16 threads at once; prints the tcache
 *                total while they all still hold their caches
 *   decay MS     a burst of 128 MiB of blocks above 32 KiB, freed, then
 *                light activity for MS ms; prints rss_start, rss_freed,
 *                rss_end (bytes)
 *   retain       a 64 MiB burst of large blocks, freed, malloc_trim;
 *                prints chunks=<pallet_stats_get().chunks>
 *   reuse        a malloc'd burst written non-zero, freed and trimmed,
 *                then a calloc'd burst of the same sizes checked for zero
 */
#define _GNU_SOURCE 1

#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "statm.h"

#include "pallet.h" /* the types only; nothing of it is linked */

#define MIB ((size_t)1 << 20)

typedef int (*stats_get_fn)(pallet_stats_t *);

static stats_get_fn stats_get(void)
{
  stats_get_fn f;
  *(void **)(&f) = dlsym(RTLD_DEFAULT, "pallet_stats_get");
  if (f == NULL) {
    fprintf(stderr, "options_effect_prog: pallet_stats_get not found "
            "(not running under pallet?)\n");
    exit(77);
  }
  return f;
}

/* Hides a pointer from the compiler, so that it neither removes the
 * accesses below nor warns about them. */
static void *opaque(void *p)
{
  void *volatile v = p;
  return v;
}

static size_t tu_index(size_t i)
{
  volatile size_t v = i;
  return v;
}

static size_t rss(void) { return statm_bytes(1); }

static void sleep_ms(unsigned ms)
{
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static uint64_t next_rand(uint64_t *s)
{
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 17;
}

static void *work_thread(void *arg)
{
  uint64_t s = (uint64_t)(uintptr_t)arg;
  void *p[256];
  size_t n[256];
  int i, round;
  for (round = 0; round < 20; round++) {
    for (i = 0; i < 256; i++) {
      n[i] = (size_t)(next_rand(&s) % (i % 16 == 0 ? 100000 : 2000)) + 1;
      p[i] = malloc(n[i]);
      if (p[i] == NULL)
        return (void *)1;
      memset(p[i], i & 0xff, n[i]);
    }
    for (i = 0; i < 256; i++) {
      unsigned char *c = p[i];
      if (c[0] != (unsigned char)(i & 0xff) || c[n[i] - 1] != (unsigned char)(i & 0xff))
        return (void *)1;
      p[i] = realloc(p[i], n[i] * 2);
      if (p[i] == NULL || ((unsigned char *)p[i])[n[i] - 1] != (unsigned char)(i & 0xff))
        return (void *)1;
      free(p[i]);
    }
  }
  return NULL;
}

static int mode_work(void)
{
  pthread_t t;
  void *r1 = NULL, *r2;
  char *z;
  if (pthread_create(&t, NULL, work_thread, (void *)(uintptr_t)7) != 0)
    return 1;
  r2 = work_thread((void *)(uintptr_t)11);
  pthread_join(t, &r1);
  if (r1 != NULL || r2 != NULL) {
    fprintf(stderr, "options_effect_prog: a block did not hold its contents\n");
    return 1;
  }
  z = calloc(1000, 10);
  if (z == NULL)
    return 1;
  for (int i = 0; i < 10000; i++)
    if (z[i] != 0)
      return 1;
  free(z);
  return 0;
}

/* Runs fn(a, b) in a child whose stderr goes to /dev/null: 1 if the
 * child died of SIGABRT, 0 if not, -1 if fork or waitpid failed. */
static int child_aborts(void (*fn)(size_t, size_t), size_t a, size_t b)
{
  int st;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0)
      dup2(fd, 2);
    fn(a, b);
    _exit(0);
  }
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

/* Child of mode_overflow_values: one byte of value v written just past
 * an n-byte block, which is then freed. */
static void overflow_child(size_t n, size_t v)
{
  volatile char *p = opaque(malloc(n));
  size_t i;
  if (p == NULL)
    _exit(1);
  for (i = 0; i < n; i++)
    p[i] = 'a';
  p[tu_index(n)] = (char)v;
  free(opaque((void *)p));
}

/* Every byte value but the pad's own (0xa5) written one past the end of
 * blocks of many sizes, each in a child of its own: each child must die
 * of SIGABRT.  Prints the first few that did not; returns 1 if any. */
static int mode_overflow_values(void)
{
  static const size_t sizes[] = {1,  7,  8,  15, 16,  23,  24,   40,    56,     100,
                                 120, 1000, 4088, 4096, 40000, 300000, 5 << 20};
  size_t i;
  unsigned v, misses = 0;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    for (v = 0; v < 256; v++) {
      int died;
      /* Every value for a few sizes, a handful for the others. */
      if (v == 0xa5 || (i % 4 != 0 && v != 0 && v != 'x' && v != 0xff && v != 0x5a))
        continue;
      died = child_aborts(overflow_child, sizes[i], v);
      if (died < 0)
        return 1;
      if (!died) {
        if (misses++ < 5)
          printf("missed: size %zu, byte 0x%02x\n", sizes[i], v);
      }
    }
  }
  return misses != 0;
}

static int mode_overflow(void)
{
  /* Through opaque(): the compiler may drop a malloc/free pair. */
  /* Volatile stores: the compiler must not drop them as dead (they are
   * to memory that is freed next). */
  volatile char *p = opaque(malloc(24));
  size_t i;
  if (p == NULL)
    return 1;
  for (i = 0; i < 24; i++)
    p[i] = 'a';
  p[tu_index(24)] = 'x'; /* one byte past the end */
  free(opaque((void *)p));
  return 0;
}

/* Frees a block of size bytes, mallocs between bytes, and frees the first
 * block again: a double free, unless that malloc got the freed block back
 * (then it frees the new block).  Prints both addresses on stderr, and
 * same=1 on stdout when they are equal.  large-twice: a large block and a
 * small malloc, which must not be carved from the freed block's pages;
 * small-twice: a small block and a malloc of its size. */
static int free_twice(size_t size, size_t between)
{
  char *p = opaque(malloc(size));
  char *q;
  if (p == NULL)
    return 1;
  memset(p, 1, size);
  free(opaque(p));
  q = opaque(malloc(between));
  if (q == NULL)
    return 1;
  memset(q, 2, between);
  fprintf(stderr, "target=%p small=%p\n", (void *)p, (void *)q);
  printf("same=%d\n", p == q);
  fflush(stdout);
  free(opaque(p));
  return 0; /* q stays live: freeing it could be what aborts */
}

/* A 64-byte block, filled, freed, then changed at byte at (a byte other
 * than the one there: what free wrote in the first 16 bytes depends on
 * the secret, and a fixed value ('x') matched it in one run in about 200;
 * CI failed so at 2d61ea5).  NULL if malloc failed. */
static volatile char *freed_then_written(size_t at)
{
  volatile char *p = opaque(malloc(64));
  int i;
  if (p == NULL)
    return NULL;
  for (i = 0; i < 64; i++)
    p[i] = 'a';
  free(opaque((void *)p));
  p[tu_index(at)] ^= 0x5a;
  return p;
}

/* uaf: the block written after free (byte at), then 1000 blocks of its
 * size allocated (one of which may be it) and freed. */
static int mode_uaf(size_t at)
{
  void *keep[1000];
  int i;
  if (freed_then_written(at) == NULL)
    return 1;
  for (i = 0; i < 1000; i++) {
    keep[i] = malloc(64);
    if (keep[i] == NULL)
      return 1;
  }
  for (i = 0; i < 1000; i++)
    free(keep[i]);
  return 0;
}

/* uaf-then: the block written after free (byte at; byte 0 wipes what free
 * wrote in its first word), then given up: "twice" frees it again, "trim"
 * calls malloc_trim (which empties PALLET_CANARY's quarantine), "evict"
 * frees 5000 other blocks (which push it out of the quarantine).  Prints
 * the block's address on stderr first. */
static int mode_uaf_then(const char *then, size_t at)
{
  volatile char *p = freed_then_written(at);
  int i;
  if (p == NULL)
    return 1;
  fprintf(stderr, "target=%p\n", (void *)p);
  if (strcmp(then, "twice") == 0) {
    free(opaque((void *)p));
  } else if (strcmp(then, "trim") == 0) {
    malloc_trim(0);
  } else if (strcmp(then, "evict") == 0) {
    for (i = 0; i < 5000; i++)
      free(opaque(malloc(64)));
  } else {
    return 2;
  }
  return 0;
}

/* wiped-many: 6000 blocks of 16 B to 1 KiB, freed in order, so that the
 * last 4096 wait in PALLET_CANARY's quarantine (its set of addresses then
 * holds 4096 entries, after 1904 removals, with runs of collisions);
 * then 64 of the newest 4000 of those, spread over them, in a child each:
 * the block's first word changed, and the block freed again.  Prints
 * misses=N, the children that did not die of SIGABRT. */
enum { WIPED_N = 6000 };
static volatile char *wiped[WIPED_N];

/* Child of mode_wiped_many: block k, freed, changed in its first word,
 * freed again. */
static void wipe_and_free(size_t k, size_t unused)
{
  (void)unused;
  wiped[k][0] ^= 0x5a;
  free(opaque((void *)wiped[k]));
}

static int mode_wiped_many(void)
{
  enum { N = WIPED_N, HELD = 4096, PROBES = 64 };
  volatile char **p = wiped;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  int i, misses = 0;
  for (i = 0; i < N; i++) {
    size_t n;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    n = 16 + (size_t)(rng >> 33) % 1009;
    p[i] = opaque(malloc(n));
    if (p[i] == NULL)
      return 1;
    memset((void *)p[i], 'b', n);
  }
  for (i = 0; i < N; i++)
    free(opaque((void *)p[i]));
  for (i = 0; i < PROBES; i++) {
    /* (Not the oldest 96: a free made meanwhile would push them out.) */
    int died = child_aborts(wipe_and_free, (size_t)(N - HELD + 96 + (i * 61) % (HELD - 96)), 0);
    if (died < 0)
      return 1;
    misses += !died;
  }
  printf("misses=%d\n", misses);
  return 0;
}

/* Two passes of mallocs then frees of 300 blocks of each of 48 sizes
 * (160 B to 7.5 KiB), which leave the calling thread's cache full. */
enum { FILL_PER = 300, FILL_NS = 48 };
typedef void *fill_blocks_t[FILL_NS][FILL_PER];

static int fill_cache(fill_blocks_t p)
{
  int s, i, pass;
  /* The second pass: caches that grow do so on refills. */
  for (pass = 0; pass < 2; pass++) {
    for (s = 0; s < FILL_NS; s++)
      for (i = 0; i < FILL_PER; i++) {
        p[s][i] = malloc((size_t)(s + 1) * 160);
        if (p[s][i] == NULL)
          return 1;
      }
    for (s = 0; s < FILL_NS; s++)
      for (i = 0; i < FILL_PER; i++)
        free(p[s][i]);
  }
  return 0;
}

static int mode_tcache(void)
{
  stats_get_fn get = stats_get();
  static pallet_stats_t st;
  static fill_blocks_t p;
  if (fill_cache(p) != 0)
    return 1;
  get(&st);
  printf("tcache=%zu\n", st.tcache);
  return 0;
}

enum { FILL_THREADS = 16 };
static pthread_barrier_t filled, done;

static void *fill_and_hold(void *arg)
{
  void *rc = (void *)(intptr_t)fill_cache(*(fill_blocks_t *)arg);
  pthread_barrier_wait(&filled);
  pthread_barrier_wait(&done);
  return rc;
}

static int mode_tcache_threads(void)
{
  stats_get_fn get = stats_get();
  static pallet_stats_t st;
  static fill_blocks_t p[FILL_THREADS];
  pthread_t t[FILL_THREADS];
  int i, rc = 0;
  get(&st); /* the main thread's cache exists before the workers' */
  pthread_barrier_init(&filled, NULL, FILL_THREADS + 1);
  pthread_barrier_init(&done, NULL, FILL_THREADS + 1);
  for (i = 0; i < FILL_THREADS; i++)
    if (pthread_create(&t[i], NULL, fill_and_hold, &p[i]) != 0)
      return 1;
  pthread_barrier_wait(&filled);
  get(&st);
  printf("tcache=%zu\n", st.tcache);
  pthread_barrier_wait(&done);
  for (i = 0; i < FILL_THREADS; i++) {
    void *r;
    pthread_join(t[i], &r);
    if (r != NULL)
      rc = 1;
  }
  return rc;
}

struct burst {
  void *p[8192];
  size_t n[8192];
  size_t count;
};

static int burst_alloc(struct burst *b, size_t budget, size_t min, size_t max,
                       int use_calloc)
{
  uint64_t s = 12345;
  size_t total = 0;
  b->count = 0;
  while (total < budget && b->count < 8192) {
    size_t n = min + (size_t)(next_rand(&s) % (max - min));
    void *p = use_calloc ? calloc(1, n) : malloc(n);
    if (p == NULL)
      return 1;
    if (use_calloc) {
      const unsigned char *c = p;
      for (size_t i = 0; i < n; i += 61)
        if (c[i] != 0) {
          fprintf(stderr, "options_effect_prog: calloc(1, %zu) = %p reads %#x at %zu\n",
                  n, p, c[i], i);
          return 1;
        }
    }
    memset(p, 0x77, n);
    b->p[b->count] = p;
    b->n[b->count] = n;
    b->count++;
    total += n;
  }
  return 0;
}

static void burst_free(struct burst *b)
{
  /* Every other block first, so that the heap fragments, then the rest. */
  for (size_t i = 1; i < b->count; i += 2)
    free(b->p[i]);
  for (size_t i = 0; i < b->count; i += 2)
    free(b->p[i]);
  b->count = 0;
}

static int mode_decay(unsigned ms)
{
  static struct burst b;
  size_t r0, r1, r2;
  unsigned t;
  free(opaque(malloc(100)));
  r0 = rss();
  if (burst_alloc(&b, 128 * MIB, 40 << 10, 2 << 20, 0) != 0)
    return 1;
  burst_free(&b);
  r1 = rss();
  for (t = 0; t < ms; t += 10) {
    /* Through opaque(): the compiler may drop a malloc/free pair. */
    void *p = opaque(malloc(300000)), *q = opaque(malloc(50000));
    free(p);
    free(q);
    sleep_ms(10);
  }
  r2 = rss();
  printf("rss_start=%zu\nrss_freed=%zu\nrss_end=%zu\n", r0, r1, r2);
  return 0;
}

static int mode_retain(void)
{
  static struct burst b;
  static pallet_stats_t st;
  stats_get_fn get = stats_get();
  if (burst_alloc(&b, 64 * MIB, 300 << 10, 3 << 20, 0) != 0)
    return 1;
  burst_free(&b);
  malloc_trim(0);
  get(&st);
  printf("chunks=%zu\n", st.chunks);
  return 0;
}

static int mode_reuse(void)
{
  static struct burst b;
  int round;
  for (round = 0; round < 3; round++) {
    if (burst_alloc(&b, 64 * MIB, 16, 300 << 10, round > 0) != 0)
      return 1;
    burst_free(&b);
    malloc_trim(0);
  }
  return 0;
}

int main(int argc, char **argv)
{
  int rc;
  if (argc < 2) {
    fprintf(stderr, "usage: %s work|overflow|overflow-values|large-twice|small-twice|uaf [AT]|uaf-then twice|trim|evict [AT]|wiped-many|tcache|tcache-threads|decay MS|retain|reuse\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "work") == 0)
    rc = mode_work();
  else if (strcmp(argv[1], "overflow") == 0)
    rc = mode_overflow();
  else if (strcmp(argv[1], "overflow-values") == 0)
    rc = mode_overflow_values();
  else if (strcmp(argv[1], "small-twice") == 0)
    rc = free_twice(64, 64);
  else if (strcmp(argv[1], "large-twice") == 0)
    rc = free_twice(300000, 100);
  else if (strcmp(argv[1], "uaf") == 0)
    rc = mode_uaf(argc > 2 ? (size_t)atoi(argv[2]) : 40);
  else if (strcmp(argv[1], "wiped-many") == 0)
    rc = mode_wiped_many();
  else if (strcmp(argv[1], "uaf-then") == 0 && argc > 2)
    rc = mode_uaf_then(argv[2], argc > 3 ? (size_t)atoi(argv[3]) : 0);
  else if (strcmp(argv[1], "tcache") == 0)
    rc = mode_tcache();
  else if (strcmp(argv[1], "tcache-threads") == 0)
    rc = mode_tcache_threads();
  else if (strcmp(argv[1], "decay") == 0)
    rc = mode_decay(argc > 2 ? (unsigned)atoi(argv[2]) : 500);
  else if (strcmp(argv[1], "retain") == 0)
    rc = mode_retain();
  else if (strcmp(argv[1], "reuse") == 0)
    rc = mode_reuse();
  else {
    fprintf(stderr, "options_effect_prog: unknown mode %s\n", argv[1]);
    return 2;
  }
  if (rc == 0)
    printf("ok\n");
  return rc;
}
