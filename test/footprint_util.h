/*
 * footprint_util.h — helpers shared by the footprint and statistics tests
 * (test/footprint_*.c, test/stats_exact.c):
 *
 *  - fp_burst_*: a reproducible "burst" of mixed small, medium, large and
 *    huge blocks up to a byte budget, every block written (so it is
 *    resident), freed in shuffled order;
 *  - fp_rss(): the resident set read with open/read (no stdio, so no
 *    allocation of glibc's heap at the moment of measuring);
 *  - fp_map()/fp_unmap(): bookkeeping arrays straight from mmap, touched
 *    up front, so they neither count in pallet's statistics nor make the
 *    RSS move between two measurements;
 *  - fp_reexec(): runs this test binary again with a mode argument and
 *    extra environment (pallet reads its PALLET_* options once, at start).
 *
 * These tests link libpallet_core (only the pallet_ names), so glibc's
 * malloc serves cmocka and stdio and pallet serves only what the test
 * asks of it through pallet_malloc & co.
 */
#ifndef PALLET_FOOTPRINT_UTIL_H
#define PALLET_FOOTPRINT_UTIL_H

#include "testutil.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>

#define FP_KIB ((size_t)1 << 10)
#define FP_MIB ((size_t)1 << 20)

extern char **environ;

/* ---- memory of the test itself -------------------------------------- */

TU_FN void *fp_map(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  memset(p, 0, bytes); /* resident from now on */
  return p;
}

TU_FN void fp_unmap(void *p, size_t bytes)
{
  if (p != NULL)
    munmap(p, bytes);
}

/* Resident set in bytes, from /proc/self/statm (field `field`: 0 = total
 * virtual size, 1 = resident). */
TU_FN size_t fp_statm(int field) { return statm_bytes(field); }

TU_FN size_t fp_rss(void) { return fp_statm(1); }
TU_FN size_t fp_vsize(void) { return fp_statm(0); }

TU_FN void fp_sleep_ms(unsigned ms)
{
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

TU_FN double fp_mib(size_t bytes) { return (double)bytes / (double)FP_MIB; }
TU_FN double fp_smib(long long bytes) { return (double)bytes / (double)FP_MIB; }

/* ---- the burst ------------------------------------------------------ */

struct fp_burst {
  void **ptr;
  size_t *size;
  size_t cap, n;
  size_t map_bytes; /* of ptr and size together */
  size_t bytes;     /* requested bytes of the blocks in ptr[0..n) */
  int zeroed;       /* allocated with calloc */
};

/* Room for `cap` blocks. */
TU_FN int fp_burst_init(struct fp_burst *b, size_t cap)
{
  size_t each = cap * sizeof(void *);
  memset(b, 0, sizeof *b);
  b->map_bytes = 2 * each;
  b->ptr = fp_map(b->map_bytes);
  if (b->ptr == NULL)
    return -1;
  b->size = (size_t *)(void *)((char *)b->ptr + each);
  b->cap = cap;
  return 0;
}

TU_FN void fp_burst_destroy(struct fp_burst *b)
{
  fp_unmap(b->ptr, b->map_bytes);
  memset(b, 0, sizeof *b);
}

static inline uint64_t fp_rand(uint64_t *s)
{
  /* xorshift64* */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* The size of the next block of a burst.  By count almost all blocks are
 * small; by bytes about 28 % small (16 B - 1 KiB), 44 % medium (1 KiB -
 * 256 KiB), 17 % large (256 KiB - 4 MiB) and, when `huge` is set, 12 %
 * huge (5 - 9 MiB; otherwise those are large too). */
static inline size_t fp_burst_size(uint64_t *s, int huge)
{
  uint64_t r = fp_rand(s);
  unsigned pick = (unsigned)(r % 100000);
  r >>= 17;
  if (pick < 97000)
    return 16 + (size_t)(r % 1009);                        /* small */
  if (pick < 99700)
    return 1024 + (size_t)(r % (31 * 1024));               /* medium */
  if (pick < 99950)
    return 32 * 1024 + (size_t)(r % (224 * 1024));         /* medium */
  if (pick < 99982 || !huge)
    return 256 * 1024 + 1 + (size_t)(r % (3840 * 1024));   /* large */
  return 5 * FP_MIB + (size_t)(r % (4 * FP_MIB));          /* huge */
}

/* Allocates blocks until `budget` requested bytes (or the array is full),
 * writing every byte of every block.  Returns 0, or -1 when pallet
 * returned NULL. */
TU_FN int fp_burst_alloc(struct fp_burst *b, size_t budget, uint64_t seed,
                         int huge, int use_calloc)
{
  uint64_t s = seed | 1;
  b->zeroed = use_calloc;
  while (b->bytes < budget && b->n < b->cap) {
    size_t n = fp_burst_size(&s, huge);
    void *p = use_calloc ? pallet_calloc(1, n) : pallet_malloc(n);
    if (p == NULL)
      return -1;
    if (!use_calloc)
      memset(p, (int)(b->n & 0xff) | 1, n);
    b->ptr[b->n] = p;
    b->size[b->n] = n;
    b->n++;
    b->bytes += n;
  }
  return 0;
}

/* Checks what calloc returned: every block must read as zero.  Returns
 * the index of the first block that does not, or (size_t)-1.  Then
 * writes the blocks (so they are resident like a malloc burst). */
TU_FN size_t fp_burst_check_zero_and_touch(struct fp_burst *b)
{
  size_t i, bad = (size_t)-1;
  for (i = 0; i < b->n; i++) {
    if (bad == (size_t)-1 && tu_first_nonzero(b->ptr[i], b->size[i]) != (size_t)-1)
      bad = i;
    memset(b->ptr[i], 0x33, b->size[i]);
  }
  return bad;
}

/* Frees every block, in an order shuffled with `seed`. */
TU_FN void fp_burst_free(struct fp_burst *b, uint64_t seed)
{
  uint64_t s = seed | 1;
  size_t i;
  for (i = b->n; i > 1; i--) {
    size_t j = (size_t)(fp_rand(&s) % i);
    void *tp = b->ptr[i - 1];
    size_t ts = b->size[i - 1];
    b->ptr[i - 1] = b->ptr[j];
    b->size[i - 1] = b->size[j];
    b->ptr[j] = tp;
    b->size[j] = ts;
  }
  for (i = 0; i < b->n; i++)
    pallet_free(b->ptr[i]);
  b->n = 0;
  b->bytes = 0;
}

/* Light activity: a few blocks of various sizes allocated and freed, as a
 * program that has gone quiet still does now and then.  Touches the slow
 * paths too (a large block each time), which is where decay runs. */
TU_FN void fp_light_activity(unsigned round)
{
  static const size_t sizes[] = {24, 200, 3000, 40 * 1024, 300 * 1024};
  void *p[5];
  size_t i;
  for (i = 0; i < 5; i++) {
    p[i] = pallet_malloc(sizes[(i + round) % 5]);
    if (p[i] != NULL)
      memset(p[i], 1, 16);
  }
  for (i = 0; i < 5; i++)
    pallet_free(p[i]);
}

/* ---- re-running the test binary with options set -------------------- */

/* Runs /proc/self/exe with argv {self, mode, NULL} and the environment of
 * this process plus `extra` (NULL-terminated "NAME=value" strings, which
 * override variables of the same name).  Waits up to `seconds`; returns
 * the wait status, or -1 when the child could not be started.  The
 * child's stdout and stderr are the test's. */
TU_FN int fp_reexec(const char *mode, const char *const *extra, unsigned seconds)
{
  pid_t pid;
  int status = -1;
  fflush(NULL);
  pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    char *args[3];
    char **env;
    size_t ne = 0, nx = 0, i, k = 0;
    while (environ[ne] != NULL) ne++;
    while (extra != NULL && extra[nx] != NULL) nx++;
    env = calloc(ne + nx + 1, sizeof *env);
    if (env == NULL)
      _exit(99);
    for (i = 0; i < ne; i++) {
      size_t j, keep = 1;
      for (j = 0; j < nx; j++) {
        const char *eq = strchr(extra[j], '=');
        size_t len = eq ? (size_t)(eq - extra[j]) + 1 : strlen(extra[j]);
        if (strncmp(environ[i], extra[j], len) == 0)
          keep = 0;
      }
      if (keep)
        env[k++] = environ[i];
    }
    for (i = 0; i < nx; i++)
      env[k++] = (char *)extra[i];
    env[k] = NULL;
    args[0] = (char *)"footprint-child";
    args[1] = (char *)mode;
    args[2] = NULL;
    alarm(seconds);
    execve("/proc/self/exe", args, env);
    _exit(98);
  }
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return status;
}

#endif /* PALLET_FOOTPRINT_UTIL_H */
