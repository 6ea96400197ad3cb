/*
 * api_misuse.c — death tests: heap misuse must stop the program with
 * abort() and a clear message naming the pointer
 * ("pallet: free(): invalid pointer 0x..." / "pallet: free(): double
 * free 0x..."): free of a stack address, of a global, of a pointer from
 * another allocator (glibc's malloc: this test links libpallet_core, which
 * does not override it), of interior pointers of small, large and huge
 * blocks; double frees (at once and A,B,A) in every size range; realloc of
 * a freed block; malloc_usable_size of a foreign pointer; free, realloc
 * and malloc_usable_size of block starts pallet never handed out (the
 * neighbours of a live block).  Also the
 * no-false-alarm cases: a live block that holds a copy of a freed block's
 * bytes, or arbitrary first words, frees fine.  Each case runs in a child.
 */
#include "testutil.h"

#include <pthread.h>

#include "config.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* A --disable-hardening build drops the block-start and double-free
 * checks from the fast paths of small blocks (up to 256 KiB): those
 * cases are only asserted in the default build.  Large and huge blocks,
 * and foreign pointers, are checked either way. */
#define SMALL_MAX_BYTES (256 * KIB)
static int checked_here(size_t size)
{
  return PL_HARDENING || size > SMALL_MAX_BYTES;
}

/* The sizes of the ranges: small class, medium class, large (whole
 * spans), very large (own mapping). */
static const size_t range_sizes[] = { 32, 64 * KIB, MIB, 64 * MIB };
static const char *const range_names[] = { "small", "medium", "large", "huge" };
#define NRANGES 4

static char a_global[256];

/* The child announces the pointer it is about to misuse, so that the
 * parent can check that the report names that very address. */
static void announce(const void *p)
{
  fprintf(stderr, "target=%p\n", p);
}

struct misuse {
  size_t size;
  size_t offset;
};

static void child_free_stack(void *arg)
{
  char buf[128];
  (void)arg;
  memset(buf, 0, sizeof buf);
  announce(buf + 16);
  pallet_free(buf + 16);
}

static void child_free_global(void *arg)
{
  (void)arg;
  announce(a_global + 32);
  pallet_free(a_global + 32);
}

static void child_free_glibc(void *arg)
{
  void *p = malloc(100); /* glibc's (or the sanitizer's) malloc */
  (void)arg;
  TU_CHILD_REQUIRE(p != NULL);
  announce(p);
  pallet_free(p);
}

static void child_free_interior(void *arg)
{
  const struct misuse *m = arg;
  char *p = pallet_malloc(m->size);
  TU_CHILD_REQUIRE(p != NULL);
  announce(p + m->offset);
  pallet_free(p + m->offset);
}

static void child_double_free(void *arg)
{
  const struct misuse *m = arg;
  void *p = pallet_malloc(m->size);
  TU_CHILD_REQUIRE(p != NULL);
  memset(p, 0x33, m->size < 4096 ? m->size : 4096);
  pallet_free(p);
  announce(p);
  pallet_free(p);
}

static void child_double_free_aba(void *arg)
{
  const struct misuse *m = arg;
  void *a = pallet_malloc(m->size), *b = pallet_malloc(m->size);
  TU_CHILD_REQUIRE(a != NULL && b != NULL);
  pallet_free(a);
  pallet_free(b);
  announce(a);
  pallet_free(a);
}

/* Frees a block again (or a pointer inside it) after every block of its
 * span has been freed and malloc_trim has given the span back to the
 * heap: the page map no longer shows the class there. */
static void span_gone(const struct misuse *m)
{
  enum { N = 2048 };
  static void *v[N];
  size_t n = m->size <= 1024 ? N : 64, i;
  for (i = 0; i < n; i++) {
    v[i] = pallet_malloc(m->size);
    TU_CHILD_REQUIRE(v[i] != NULL);
  }
  for (i = 0; i < n; i++)
    pallet_free(v[i]);
  pallet_malloc_trim(0);
  announce((char *)v[n / 2] + m->offset);
  pallet_free((char *)v[n / 2] + m->offset);
}

static void child_double_free_span_gone(void *arg)
{
  span_gone(arg);
}

static void *thread_double_free(void *p)
{
  pallet_free(p);
  announce(p);
  pallet_free(p);
  return NULL;
}

/* Allocated by one thread, freed twice by another. */
static void child_double_free_other_thread(void *arg)
{
  const struct misuse *m = arg;
  void *p = pallet_malloc(m->size);
  pthread_t t;
  TU_CHILD_REQUIRE(p != NULL);
  TU_CHILD_REQUIRE(pthread_create(&t, NULL, thread_double_free, p) == 0);
  pthread_join(t, NULL);
}

/* realloc(p, 0) frees p: freeing p again is a double free. */
static void child_realloc_zero_then_free(void *arg)
{
  const struct misuse *m = arg;
  void *p = pallet_malloc(m->size);
  TU_CHILD_REQUIRE(p != NULL);
  TU_CHILD_REQUIRE(pallet_realloc(p, tu_opaque(0)) == NULL);
  announce(p);
  pallet_free(p);
}

/* realloc to n of a block of m->size bytes, freed before. */
static void realloc_freed(const struct misuse *m, size_t n)
{
  void *p = pallet_malloc(m->size), *q;
  TU_CHILD_REQUIRE(p != NULL);
  pallet_free(p);
  announce(p);
  q = pallet_realloc(p, n);
  fprintf(stderr, "realloc of a freed block returned %p\n", q);
}

static void child_realloc_freed(void *arg)
{
  const struct misuse *m = arg;
  realloc_freed(m, m->size + 100);
}

/* The same with a size that still fits the block (realloc would keep it
 * where it is). */
static void child_realloc_freed_fits(void *arg)
{
  const struct misuse *m = arg;
  realloc_freed(m, m->size / 2);
}

/* realloc of a pointer inside a live block, to a size that fits and to
 * one that does not (m->offset; the new size is in the high bit). */
static void child_realloc_interior(void *arg)
{
  const struct misuse *m = arg;
  char *p = pallet_malloc(m->size), *q;
  TU_CHILD_REQUIRE(p != NULL);
  memset(p, 7, m->size);
  announce(p + m->offset);
  q = pallet_realloc(p + m->offset, m->offset == 16 ? m->size * 2 : 8);
  fprintf(stderr, "realloc of an interior pointer returned %p\n", (void *)q);
}

/* malloc_usable_size of a freed block (m->offset 0) or of a pointer inside
 * a live one. */
static void child_usable_size_misuse(void *arg)
{
  const struct misuse *m = arg;
  char *p = pallet_malloc(m->size);
  size_t u;
  TU_CHILD_REQUIRE(p != NULL);
  if (m->offset == 0)
    pallet_free(p);
  announce(p + m->offset);
  u = pallet_malloc_usable_size(p + m->offset);
  fprintf(stderr, "malloc_usable_size returned %zu\n", u);
}

static void child_usable_size_foreign(void *arg)
{
  char buf[64];
  size_t u;
  (void)arg;
  announce(buf);
  u = pallet_malloc_usable_size(buf);
  fprintf(stderr, "malloc_usable_size of a stack address returned %zu\n", u);
}

/* Runs the child and checks: death by SIGABRT, a "pallet: " line holding
 * one of `expect`, and (for free and the like) the misused address. */
static void expect_death(const char *what, tu_child_fn fn, void *arg,
                         const char *const *expect, int check_address)
{
  struct tu_child_result res;
  char how[128];
  const char *line, *target;
  char want[64] = "";
  int found = 0;

  tu_run_child(fn, arg, 30, &res);
  tu_describe_status(res.status, how, sizeof how);
  target = strstr(res.err, "target=");
  if (check_address && target == NULL) {
    /* it died before the misuse: that is not what is tested */
    print_error("death test '%s': the child %s before reaching the misuse;"
                " its stderr:\n%s\n", what, how, res.err[0] ? res.err : "(nothing)");
    fail_msg("death test '%s' failed", what);
  }
  if (check_address) {
    /* the address as the child printed it, up to the newline */
    size_t k = 0;
    target += strlen("target=");
    while (target[k] != '\0' && target[k] != '\n' && k < sizeof want - 2) {
      want[k] = target[k];
      k++;
    }
    want[k++] = '\n';
    want[k] = '\0';
  }
  for (line = strstr(target != NULL ? target : res.err, "pallet: "); line != NULL && !found;
       line = strstr(line + 1, "pallet: ")) {
    const char *eol = strchr(line, '\n');
    const char *const *e;
    for (e = expect; *e != NULL && !found; e++) {
      const char *hit = strstr(line, *e);
      if (hit == NULL || (eol != NULL && hit > eol))
        continue;
      if (want[0] != '\0') {
        /* the message must end with the misused address */
        hit += strlen(*e);
        if (strncmp(hit, want + 2, strlen(want + 2)) != 0)
          continue;
      }
      found = 1;
    }
  }
  if (!(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT) || !found) {
    print_error("death test '%s': expected SIGABRT and \"pallet: ...%s%s\"\n"
                "  the child %s; its stderr:\n%s\n", what, expect[0],
                want[0] ? want + 2 : "", how, res.err[0] ? res.err : "(nothing)");
    fail_msg("death test '%s' failed", what);
  }
}

static const char *const free_invalid[] = { "free(): invalid pointer 0x", NULL };
static const char *const free_double[] = { "free(): double free 0x", NULL };
static const char *const any_invalid[] = { "invalid pointer 0x", NULL };
static const char *const bad_or_double[] = { "invalid pointer 0x",
                                             "double free 0x", NULL };

static void test_free_foreign_pointers(void **state)
{
  (void)state;
  expect_death("free(stack address)", child_free_stack, NULL, free_invalid, 1);
  expect_death("free(global)", child_free_global, NULL, free_invalid, 1);
  expect_death("free(glibc malloc block)", child_free_glibc, NULL, free_invalid, 1);
}

static void test_free_interior(void **state)
{
  const size_t offsets[] = { 16, 1, 8, 4096 };
  size_t r, o;
  (void)state;
  for (r = 0; r < NRANGES; r++)
    for (o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
      struct misuse m;
      char what[96];
      m.size = range_sizes[r];
      m.offset = offsets[o];
      if (m.offset >= m.size || !checked_here(m.size))
        continue;
      snprintf(what, sizeof what, "free(p + %zu), %s block of %zu bytes",
               m.offset, range_names[r], m.size);
      expect_death(what, child_free_interior, &m, free_invalid, 1);
    }
}

static void test_double_free(void **state)
{
  size_t r;
  (void)state;
  for (r = 0; r < NRANGES; r++) {
    struct misuse m;
    char what[96];
    m.size = range_sizes[r];
    m.offset = 0;
    if (!checked_here(m.size))
      continue;
    snprintf(what, sizeof what, "free(p); free(p), %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_double_free, &m, free_double, 1);
    snprintf(what, sizeof what, "free(a); free(b); free(a), %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_double_free_aba, &m, free_double, 1);
    snprintf(what, sizeof what, "double free in another thread, %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_double_free_other_thread, &m, free_double, 1);
    snprintf(what, sizeof what, "realloc(p, 0); free(p), %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_realloc_zero_then_free, &m, free_double, 1);
  }
  /* Blocks whose span went back to the heap: told apart by the page's
   * ghost word (slow path, so in every build); or whose chunk went back
   * to the OS (64 blocks of 1 MiB fill 16 chunks, and malloc_trim keeps
   * one): told apart by the slot's tombstone. */
  for (r = 0; r < 3; r++) {
    struct misuse m;
    char what[96];
    m.size = range_sizes[r];
    m.offset = 0;
    snprintf(what, sizeof what, "free after the span went back, %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_double_free_span_gone, &m, free_double, 1);
    if (r == 2)
      break; /* (a tombstone does not know where blocks started) */
    m.offset = 16;
    snprintf(what, sizeof what, "free(p + 16) after the span went back, %s block",
             range_names[r]);
    expect_death(what, child_double_free_span_gone, &m, free_invalid, 1);
  }
}

static void test_realloc_freed(void **state)
{
  size_t r;
  (void)state;
  for (r = 0; r < NRANGES; r++) {
    struct misuse m;
    char what[96];
    m.size = range_sizes[r];
    m.offset = 0;
    if (!checked_here(m.size))
      continue;
    snprintf(what, sizeof what, "realloc of a freed %s block of %zu bytes",
             range_names[r], m.size);
    expect_death(what, child_realloc_freed, &m, bad_or_double, 1);
  }
}

static void test_realloc_misuse(void **state)
{
  const size_t sizes[] = { 32, 48, 1000, 20 * KIB };
  const size_t offsets[] = { 16, 8, 1 };
  size_t i, o;
  (void)state;
  if (!checked_here(sizes[0]))
    skip(); /* every size here is a small block */
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    struct misuse m;
    char what[96];
    m.size = sizes[i];
    m.offset = 0;
    snprintf(what, sizeof what, "realloc(freed, smaller) of a %zu-byte block", m.size);
    expect_death(what, child_realloc_freed_fits, &m, bad_or_double, 1);
    for (o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
      static const char *const realloc_invalid[] = { "realloc(): invalid pointer 0x", NULL };
      m.offset = offsets[o];
      snprintf(what, sizeof what, "realloc(p + %zu) of a %zu-byte block", m.offset, m.size);
      expect_death(what, child_realloc_interior, &m, realloc_invalid, 1);
    }
  }
}

static void test_usable_size_foreign(void **state)
{
  static const char *const usable_double[] = { "malloc_usable_size(): double free 0x", NULL };
  static const char *const usable_invalid[] = { "malloc_usable_size(): invalid pointer 0x", NULL };
  const size_t sizes[] = { 32, 48, 1000, 20 * KIB };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    struct misuse m;
    char what[96];
    m.size = sizes[i];
    m.offset = 0;
    if (!checked_here(m.size))
      continue;
    snprintf(what, sizeof what, "malloc_usable_size(freed) of a %zu-byte block", m.size);
    expect_death(what, child_usable_size_misuse, &m, usable_double, 1);
    m.offset = 16;
    snprintf(what, sizeof what, "malloc_usable_size(p + 16) of a %zu-byte block", m.size);
    expect_death(what, child_usable_size_misuse, &m, usable_invalid, 1);
  }
  expect_death("malloc_usable_size(stack address)", child_usable_size_foreign,
               NULL, any_invalid, 1);
}

/* A block start pallet never handed out: `blocks` blocks of the class
 * after (or, if negative, before) the one malloc returned, the block
 * size being what malloc_usable_size says.  Freed, reallocated or
 * measured (m->op: 0, 1, 2), it must stop the program, as a free of
 * a block that is free: it may be in the thread's cache, in its span on
 * a page whose blocks have their free key, or on a page not used yet.
 * (Before pages were cold, such a free was taken for a real one and the
 * block could be handed out twice.)  The first malloc of a class takes a
 * batch of blocks in address order and returns the last: the blocks
 * after it were never handed out, and the report says "invalid pointer"
 * (it said "double free" until the spans kept the end of what they gave,
 * span.h); the block before it waits in the thread's cache, where it
 * looks like a freed one, and either report is accepted. */
struct never {
  size_t size;
  long blocks;
  int op;
};

static void child_never_handed_out(void *arg)
{
  const struct never *m = arg;
  char *p = pallet_malloc(m->size), *q;
  TU_CHILD_REQUIRE(p != NULL);
  memset(p, 9, m->size);
  q = p + m->blocks * (long)pallet_malloc_usable_size(p);
  announce(q);
  if (m->op == 0) {
    pallet_free(q);
  } else if (m->op == 1) {
    q = pallet_realloc(q, 2 * m->size);
    fprintf(stderr, "realloc returned %p\n", (void *)q);
  } else {
    fprintf(stderr, "malloc_usable_size returned %zu\n", pallet_malloc_usable_size(q));
  }
  /* Had it been taken for a free, the block could come back from malloc
   * while its span still counts it free. */
  for (int i = 0; i < 4096; i++) {
    void *r = pallet_malloc(m->size);
    TU_CHILD_REQUIRE(r != NULL);
    memset(r, 1, m->size);
  }
}

static void test_never_handed_out(void **state)
{
  static const char *const ops[] = { "free", "realloc", "malloc_usable_size" };
  const size_t sizes[] = { 16, 24, 100, 2000, 5000 };
  const long blocks[] = { 1, 2, -1, 40, 300 };
  size_t i, j;
  int op;
  (void)state;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (j = 0; j < sizeof blocks / sizeof blocks[0]; j++)
      for (op = 0; op < 3; op++) {
        struct never m;
        char what[128];
        m.size = sizes[i];
        m.blocks = blocks[j];
        m.op = op;
        if (!PL_HARDENING)
          continue; /* (the key check is off) */
        snprintf(what, sizeof what, "%s(p %+ld blocks), never handed out, %zu-byte blocks",
                 ops[op], m.blocks, m.size);
        expect_death(what, child_never_handed_out, &m, m.blocks > 0 ? any_invalid : bad_or_double, 1);
      }
}

/* ---- no false alarms ------------------------------------------------ */

/* Reads a freed block's bytes into a live block without the sanitizer
 * (the bytes are pallet's free-list data: reading them is the point). */
__attribute__((noinline, no_sanitize_address))
static void copy_raw(void *dst, const void *src, size_t n)
{
  volatile const unsigned char *s = src;
  unsigned char *d = dst;
  size_t i;
  for (i = 0; i < n; i++)
    d[i] = s[i];
}

/* A live block that holds a copy of a freed block's bytes (free-list
 * link, double-free key, whatever pallet keeps there) frees fine. */
static void child_copy_freed_bytes(void *arg)
{
  const size_t sizes[] = { 16, 24, 32, 48, 64, 100, 128, 256, 512, 1024,
                           4096, 64 * KIB };
  size_t i;
  int round;
  (void)arg;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (round = 0; round < 4; round++) {
      size_t n = sizes[i];
      unsigned char *a = pallet_malloc(n), *b = pallet_malloc(n),
                    *c = pallet_malloc(n);
      TU_CHILD_REQUIRE(a != NULL && b != NULL && c != NULL);
      memset(a, 0x5c, n);
      pallet_free(a);
      if (round & 1)
        pallet_free(c); /* a's link now points somewhere real */
      copy_raw(b, a, n);
      pallet_free(b);
      if (!(round & 1))
        pallet_free(c);
      /* and the blocks come back usable */
      a = pallet_malloc(n);
      b = pallet_malloc(n);
      TU_CHILD_REQUIRE(a != NULL && b != NULL && a != b);
      memset(a, 1, n);
      memset(b, 2, n);
      pallet_free(a);
      pallet_free(b);
    }
  TU_CHILD_REQUIRE(pallet_heap_check() == 0);
}

/* Live blocks whose first words hold 0, all ones, a pointer to the block
 * itself, a pointer to a free block: freeing them is not a misuse. */
static void child_arbitrary_first_words(void *arg)
{
  const size_t sizes[] = { 16, 32, 80, 1000, 64 * KIB, 300 * KIB, 2 * MIB };
  size_t i;
  int kind;
  (void)arg;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (kind = 0; kind < 6; kind++) {
      size_t n = sizes[i];
      uintptr_t *p = pallet_malloc(n), *freed = pallet_malloc(n);
      TU_CHILD_REQUIRE(p != NULL && freed != NULL);
      pallet_free(freed);
      switch (kind) {
      case 0: p[0] = 0; p[1] = 0; break;
      case 1: p[0] = UINTPTR_MAX; p[1] = UINTPTR_MAX; break;
      case 2: p[0] = (uintptr_t)p; p[1] = (uintptr_t)p; break;
      case 3: p[0] = (uintptr_t)freed; p[1] = (uintptr_t)freed; break;
      case 4: p[0] = (uintptr_t)(p + 2); p[1] = (uintptr_t)p ^ UINTPTR_MAX; break;
      default: memset(p, 0xff, n); break;
      }
      pallet_free(p);
    }
  TU_CHILD_REQUIRE(pallet_heap_check() == 0);
}

static void test_no_false_alarms(void **state)
{
  (void)state;
  tu_expect_clean_exit("live copy of a freed block's bytes",
                       child_copy_freed_bytes, NULL);
  tu_expect_clean_exit("live blocks with arbitrary first words",
                       child_arbitrary_first_words, NULL);
}

/* The helpers must be able to fail: a child that does nothing wrong is
 * not taken for a death, and a wrong message is not taken for the right
 * one.  (Checked here with the child runner directly.) */
static void child_nothing(void *arg)
{
  (void)arg;
}

static void child_plain_abort(void *arg)
{
  (void)arg;
  fputs("pallet: something else entirely\n", stderr);
  abort();
}

static void test_helpers_discriminate(void **state)
{
  struct tu_child_result res;
  (void)state;
  tu_run_child(child_nothing, NULL, 10, &res);
  assert_true(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0);
  tu_run_child(child_plain_abort, NULL, 10, &res);
  assert_true(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT);
  assert_non_null(strstr(res.err, "something else"));
  assert_null(strstr(res.err, "invalid pointer"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_helpers_discriminate),
    cmocka_unit_test(test_free_foreign_pointers),
    cmocka_unit_test(test_free_interior),
    cmocka_unit_test(test_double_free),
    cmocka_unit_test(test_realloc_freed),
    cmocka_unit_test(test_realloc_misuse),
    cmocka_unit_test(test_usable_size_foreign),
    cmocka_unit_test(test_never_handed_out),
    cmocka_unit_test(test_no_false_alarms),
  };
  tu_watchdog("api_misuse", 120);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
