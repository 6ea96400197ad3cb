/*
 * corrupt-shim.c — an LD_PRELOAD malloc shim that misbehaves on purpose,
 * to prove that pallet-stress notices.  It forwards malloc and friends to
 * glibc's own allocator (__libc_malloc, ...) and, depending on
 * CORRUPT_SHIM_MODE:
 *   flip        (default) at every Nth allocation a thread makes, remembers
 *               the block; at that thread's next allocation (by then the
 *               program has written it) flips one byte inside it, unless
 *               the block was freed in between;
 *   hang        the Nth allocation of a thread never returns;
 *   child-abort in a child made by fork(), the first allocation aborts;
 *   child-hang  in a child made by fork(), the first allocation never
 *               returns.
 * N is CORRUPT_SHIM_EVERY (default 5000); nothing happens before a thread
 * has made CORRUPT_SHIM_AFTER allocations (default 1000), which spares
 * the few allocations libc makes for the main thread.  Each act is logged
 * on stderr ("corrupt-shim: ...").  A test tool, never installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* glibc's allocator under its internal names (exported by libc.so.6) */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/* the names this shim takes over (their prototypes come from libc) */
void *memalign(size_t alignment, size_t size);
void *pvalloc(size_t size);

enum mode { M_OFF, M_FLIP, M_HANG, M_CHILD_ABORT, M_CHILD_HANG };

static enum mode mode = M_OFF;
static unsigned long every = 5000, after = 1000;
static _Atomic int in_child;

#define TLS __thread __attribute__((tls_model("initial-exec")))
static TLS unsigned long t_count;
static TLS long t_tid;

/* the block to flip: set and cleared under vlock, read without it */
static pthread_mutex_t vlock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(unsigned char *) victim;
static size_t victim_size;
static long victim_owner;
static unsigned long flips;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 1) n = (int)sizeof buf - 1;
  if (n > 0) {
    ssize_t ignored = write(2, buf, (size_t)n);
    (void)ignored;
  }
}

static long tid(void) {
  if (t_tid == 0) t_tid = syscall(SYS_gettid);
  return t_tid;
}

static void forever(void) {
  for (;;) pause();
}

static void on_fork_child(void) {
  in_child = 1;
  t_tid = 0;
}

__attribute__((constructor)) static void shim_init(void) {
  const char *m = getenv("CORRUPT_SHIM_MODE");
  const char *e = getenv("CORRUPT_SHIM_EVERY");
  const char *a = getenv("CORRUPT_SHIM_AFTER");
  if (e && strtoul(e, NULL, 0) > 0) every = strtoul(e, NULL, 0);
  if (a) after = strtoul(a, NULL, 0);
  enum mode mm = M_FLIP;
  if (m == NULL || strcmp(m, "flip") == 0)
    mm = M_FLIP;
  else if (strcmp(m, "hang") == 0)
    mm = M_HANG;
  else if (strcmp(m, "child-abort") == 0)
    mm = M_CHILD_ABORT;
  else if (strcmp(m, "child-hang") == 0)
    mm = M_CHILD_HANG;
  else if (strcmp(m, "off") == 0)
    mm = M_OFF;
  else
    say("corrupt-shim: unknown CORRUPT_SHIM_MODE '%s', doing nothing\n", m);
  pthread_atfork(NULL, NULL, on_fork_child);
  mode = mm;
}

/* Called at the start of every allocation. */
static void before_alloc(void) {
  if (mode == M_OFF) return;
  if (in_child) {
    if (mode == M_CHILD_ABORT) {
      say("corrupt-shim: aborting in fork child %ld\n", (long)getpid());
      abort();
    }
    if (mode == M_CHILD_HANG) {
      say("corrupt-shim: hanging in fork child %ld\n", (long)getpid());
      forever();
    }
  }
  ++t_count;
  if (mode == M_HANG && t_count == after + every) {
    say("corrupt-shim: thread %ld hangs in malloc\n", tid());
    forever();
  }
  if (mode != M_FLIP || atomic_load(&victim) == NULL) return;
  pthread_mutex_lock(&vlock);
  unsigned char *p = atomic_load(&victim);
  if (p != NULL && victim_owner == tid()) {
    size_t off = (size_t)(t_count * 2654435761u) % victim_size;
    unsigned char was = p[off];
    p[off] = (unsigned char)(was ^ 0x10);
    flips++;
    say("corrupt-shim: flipped byte at offset %zu of block %p (size %zu): "
        "0x%02x -> 0x%02x\n", off, (void *)p, victim_size, was, p[off]);
    atomic_store(&victim, NULL);
  }
  pthread_mutex_unlock(&vlock);
}

/* Called with every block handed out. */
static void *after_alloc(void *p, size_t size) {
  if (mode != M_FLIP || p == NULL || size == 0) return p;
  if (t_count < after || t_count % every != 0) return p;
  pthread_mutex_lock(&vlock);
  if (atomic_load(&victim) == NULL) {
    victim_size = size;
    victim_owner = tid();
    atomic_store(&victim, (unsigned char *)p);
  }
  pthread_mutex_unlock(&vlock);
  return p;
}

/* A block leaving the program's hands is no longer a target. */
static void forget(void *p) {
  if (p == NULL || atomic_load(&victim) != p) return;
  pthread_mutex_lock(&vlock);
  if (atomic_load(&victim) == p) atomic_store(&victim, NULL);
  pthread_mutex_unlock(&vlock);
}

void *malloc(size_t size) {
  before_alloc();
  return after_alloc(__libc_malloc(size), size);
}

void *calloc(size_t nmemb, size_t size) {
  before_alloc();
  return after_alloc(__libc_calloc(nmemb, size), nmemb * size);
}

void *realloc(void *ptr, size_t size) {
  before_alloc();
  forget(ptr);
  return after_alloc(__libc_realloc(ptr, size), size);
}

void free(void *ptr) {
  forget(ptr);
  __libc_free(ptr);
}

void *memalign(size_t alignment, size_t size) {
  before_alloc();
  return after_alloc(__libc_memalign(alignment, size), size);
}

void *aligned_alloc(size_t alignment, size_t size) {
  before_alloc();
  return after_alloc(__libc_memalign(alignment, size), size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
    return EINVAL;
  before_alloc();
  void *p = __libc_memalign(alignment, size);
  if (p == NULL) return ENOMEM;
  *out = after_alloc(p, size);
  return 0;
}

void *valloc(size_t size) {
  before_alloc();
  return after_alloc(__libc_valloc(size), size);
}

void *pvalloc(size_t size) {
  before_alloc();
  return __libc_pvalloc(size);
}
