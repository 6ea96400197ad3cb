/*
 * link_override.c — built three ways against libpallet (see test/api.mk):
 * linked with the shared library, with libpallet.a into a dynamic
 * program, and into a fully static program (libc.a).  In each, the
 * program's malloc must be pallet's — blocks from malloc, and from the
 * allocations glibc makes inside strdup, getline, asprintf, open_memstream,
 * qsort and stdio buffers, are recognised by pallet_malloc_usable_size
 * (which aborts on a pointer pallet did not hand out) — and all of those
 * must work.  Exit status 0 on success, 1 with a message otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pallet.h"

#ifdef PL_TEST_OLD_CFREE
/* What a binary linked before glibc 2.26 calls: libc's compat cfree, a
 * free into glibc's heap.  libpallet's cfree must take its place. */
__asm__(".symver old_cfree, cfree@GLIBC_2.2.5");
extern void old_cfree(void *);
#endif

static int failures;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

/* p came from pallet: pallet_malloc_usable_size accepts it (it would abort
 * on a foreign pointer) and agrees with the standard name. */
static void check_ours(void *p, size_t at_least, const char *what)
{
  size_t u;
  if (p == NULL) {
    fprintf(stderr, "%s: NULL\n", what);
    failures++;
    return;
  }
  u = pallet_malloc_usable_size(p);
  if (u < at_least || malloc_usable_size(p) != u ||
      ((uintptr_t)p & 15) != 0) {
    fprintf(stderr, "%s: %p usable %zu (malloc_usable_size %zu), want >= %zu, 16-aligned\n",
            what, p, u, malloc_usable_size(p), at_least);
    failures++;
  }
}

/* A thread's allocations go through its own cache; main frees them. */
static void *thread_main(void *arg)
{
  char **out = arg;
  int i;
  for (i = 0; i < 1000; i++)
    free(malloc((size_t)i * 13 + 1));
  *out = strdup("made by a thread");
  return NULL;
}

static int cmp_int(const void *a, const void *b)
{
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

int main(void)
{
  char *s, *line = NULL, *mem = NULL;
  size_t cap = 0, memlen = 0, i;
  void *p;
  FILE *f;
  int *v;
  const size_t nv = 300000; /* big enough for qsort to malloc a buffer */

  /* plain malloc: pallet's, with pallet's size classes behind it */
  p = malloc(40);
  check_ours(p, 40, "malloc(40)");
  memset(p, 1, 40);
  free(p);
#ifdef PL_TEST_OLD_CFREE
  CHECK((void *)old_cfree == (void *)pallet_free);
  p = malloc(40);
  check_ours(p, 40, "malloc(40) for cfree");
  old_cfree(p);
#endif
  p = malloc(0);
  check_ours(p, 0, "malloc(0)");
  free(p);
  /* glibc semantics of the override */
  errno = 0;
  {
    volatile size_t too_big = (size_t)PTRDIFF_MAX + 1;
    CHECK(malloc(too_big) == NULL && errno == ENOMEM);
  }
  errno = EILSEQ;
  free(NULL);
  CHECK(errno == EILSEQ);
  p = calloc(1000, 10);
  check_ours(p, 10000, "calloc");
  p = realloc(p, 100000);
  check_ours(p, 100000, "realloc");
  free(p);
  CHECK(posix_memalign(&p, 4096, 100) == 0 && ((uintptr_t)p & 4095) == 0);
  check_ours(p, 100, "posix_memalign");
  free(p);
  p = aligned_alloc(64, 128);
  check_ours(p, 128, "aligned_alloc");
  free(p);

  /* allocations made inside glibc */
  s = strdup("a string duplicated inside glibc");
  check_ours(s, strlen(s) + 1, "strdup");
  free(s);
  CHECK(asprintf(&s, "%s-%d-%0500d", "asprintf", 42, 7) > 500);
  check_ours(s, 500, "asprintf");
  free(s);

  f = open_memstream(&mem, &memlen);
  CHECK(f != NULL);
  if (f != NULL) {
    for (i = 0; i < 5000; i++)
      fprintf(f, "line %zu of a memstream\n", i);
    fclose(f);
    check_ours(mem, memlen, "open_memstream buffer");
    CHECK(memlen > 5000 * 20);
    free(mem);
  }

  /* getline from a temporary file: its buffer is realloc'ed by glibc;
   * the FILE and its buffer are malloc'ed by glibc too */
  f = tmpfile();
  CHECK(f != NULL);
  if (f != NULL) {
    size_t lines = 0, total = 0;
    ssize_t len;
    for (i = 0; i < 200; i++) {
      size_t k;
      for (k = 0; k < i * 37; k++)
        fputc('a' + (int)(k % 26), f);
      fputc('\n', f);
    }
    rewind(f);
    while ((len = getline(&line, &cap, f)) >= 0) {
      CHECK((size_t)len == lines * 37 + 1);
      total += (size_t)len;
      lines++;
    }
    CHECK(lines == 200);
    CHECK(total == 200 + 37 * (199 * 200 / 2));
    check_ours(line, cap, "getline buffer");
    free(line);
    fclose(f);
  }

  /* qsort of a big array (glibc mallocs a merge buffer) */
  v = malloc(nv * sizeof *v);
  check_ours(v, nv * sizeof *v, "array");
  if (v != NULL) {
    for (i = 0; i < nv; i++)
      v[i] = (int)((i * 2654435761u) % 1000003);
    qsort(v, nv, sizeof *v, cmp_int);
    for (i = 1; i < nv; i++)
      if (v[i - 1] > v[i])
        break;
    CHECK(i == nv);
    free(v);
  }

  /* threads and fork (pallet's thread caches and atfork handlers in a
   * program that may be fully static) */
  {
    pthread_t t;
    char *from_thread = NULL;
    pid_t pid;
    int status = -1;
    CHECK(pthread_create(&t, NULL, thread_main, &from_thread) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    check_ours(from_thread, 17, "strdup in a thread");
    free(from_thread);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
      char *c = malloc(1000);
      _exit(c != NULL && pallet_malloc_usable_size(c) >= 1000 ? 0 : 1);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

  /* printf through a fully buffered stdout (its buffer is malloc'ed) */
  setvbuf(stdout, NULL, _IOFBF, 0);
  for (i = 0; i < 3; i++)
    printf("link_override: printf %zu %s %.3f\n", i, "with buffers", (double)i / 3);
  fflush(stdout);

  if (failures != 0) {
    fprintf(stderr, "link_override: %d check(s) failed\n", failures);
    return 1;
  }
  puts("link_override: malloc is pallet's; all checks passed");
  return 0;
}
