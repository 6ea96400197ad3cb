/*
 * link_dlopen.c — libpallet loaded with dlopen() into a program whose
 * malloc stays glibc's, and used through the pallet_ names from several
 * threads, with frees of other threads' blocks and thread exits.
 *
 * usage: link_dlopen path/to/libpallet.so
 *
 * pallet's thread-local data is initial-exec TLS by default: 3.1 KiB,
 * more than glibc keeps spare for libraries loaded later, so dlopen()
 * then needs a bigger surplus (GLIBC_TUNABLES=glibc.rtld.optional_static_
 * tls=...), which this program sets for itself and re-executes.  A build
 * with --disable-initial-exec-tls must load without it.  Exit status 0 on
 * success, 1 with a message otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define BLOCKS 20000

static void *(*p_malloc)(size_t);
static void *(*p_calloc)(size_t, size_t);
static void *(*p_realloc)(void *, size_t);
static void (*p_free)(void *);
static size_t (*p_usable)(void *);

static void die(const char *what, const char *why) {
  fprintf(stderr, "link_dlopen: %s: %s\n", what, why ? why : "(null)");
  exit(1);
}

static void fill(unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + i);
}

static void check(const unsigned char *p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(tag + i)) die("check", "a block's bytes changed");
}

struct job {
  unsigned id;
  void *keep[BLOCKS / 4]; /* handed to the main thread, which frees them */
  size_t keep_n[BLOCKS / 4];
};

static void *work(void *arg) {
  struct job *j = arg;
  static __thread void *live[256];
  static __thread size_t live_n[256];
  uint64_t r = 0x9e3779b97f4a7c15ull * (j->id + 1);
  for (unsigned i = 0; i < BLOCKS; i++) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    size_t n = 1 + (size_t)(r >> 40) % 3000;
    unsigned char *p = (i % 7 == 0) ? p_calloc(1, n) : p_malloc(n);
    if (p == NULL) die("malloc", "NULL");
    if (i % 7 == 0)
      for (size_t k = 0; k < n; k++)
        if (p[k] != 0) die("calloc", "a byte is not zero");
    if (p_usable(p) < n) die("malloc_usable_size", "smaller than the request");
    fill(p, n, i);
    if (i % 4 == 0) {
      j->keep[i / 4] = p;
      j->keep_n[i / 4] = n;
      continue;
    }
    unsigned s = (unsigned)(r % 256);
    if (live[s]) {
      check(live[s], live_n[s], (unsigned)(live_n[s] * 31));
      if (s % 2) {
        unsigned char *q = p_realloc(live[s], live_n[s] * 2 + 1);
        if (q == NULL) die("realloc", "NULL");
        check(q, live_n[s], (unsigned)(live_n[s] * 31));
        live[s] = q;
      }
      p_free(live[s]);
    }
    check(p, n, i);
    fill(p, n, (unsigned)(n * 31));
    live[s] = p;
    live_n[s] = n;
  }
  for (unsigned s = 0; s < 256; s++) p_free(live[s]);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) die("usage", "link_dlopen path/to/libpallet.so");
#if PL_TLS_INITIAL_EXEC
  /* Once: the tunable is read when the program starts, so add it to
   * whatever GLIBC_TUNABLES holds and start again. */
  if (getenv("LINK_DLOPEN_AGAIN") == NULL) {
    static char tunables[4096];
    const char *old = getenv("GLIBC_TUNABLES");
    snprintf(tunables, sizeof tunables, "%s%sglibc.rtld.optional_static_tls=16384",
             old ? old : "", old && *old ? ":" : "");
    setenv("GLIBC_TUNABLES", tunables, 1);
    setenv("LINK_DLOPEN_AGAIN", "1", 1);
    execv("/proc/self/exe", argv);
    die("execv", "failed");
  }
#endif
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) die("dlopen", dlerror());
  p_malloc = (void *(*)(size_t))dlsym(h, "pallet_malloc");
  p_calloc = (void *(*)(size_t, size_t))dlsym(h, "pallet_calloc");
  p_realloc = (void *(*)(void *, size_t))dlsym(h, "pallet_realloc");
  p_free = (void (*)(void *))dlsym(h, "pallet_free");
  p_usable = (size_t(*)(void *))dlsym(h, "pallet_malloc_usable_size");
  if (!p_malloc || !p_calloc || !p_realloc || !p_free || !p_usable) die("dlsym", dlerror());

  static struct job jobs[THREADS];
  for (int round = 0; round < 3; round++) {
    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++) {
      jobs[t].id = round * THREADS + t;
      if (pthread_create(&th[t], NULL, work, &jobs[t]) != 0) die("pthread_create", "failed");
    }
    for (unsigned t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    /* The workers have exited: free what they allocated. */
    for (unsigned t = 0; t < THREADS; t++)
      for (unsigned i = 0; i < BLOCKS / 4; i++) {
        check(jobs[t].keep[i], jobs[t].keep_n[i], i * 4);
        p_free(jobs[t].keep[i]);
      }
  }
  /* The program's own malloc is still glibc's. */
  void *g = malloc(100);
  if (g == NULL) die("malloc", "NULL");
  free(g);
  puts("link_dlopen: ok");
  return 0;
}
