/*
 * stats_exact.c — pallet's statistics are exact where they can be.
 *
 * Four threads each allocate a known set of blocks (small classes,
 * medium, large and huge) and keep them live; the threads exit.  Then:
 *   - allocated grew by exactly the sum of pallet_malloc_usable_size of
 *     the blocks, large and huge by exactly their parts;
 *   - allocated <= active <= resident <= mapped (active may exceed
 *     resident by up to a page per small span: a span's active pages are
 *     counted whole);
 *   - resident grew about as much as the process's RSS did;
 *   - each size class's live count grew by the number of blocks of that
 *     size;
 *   - pallet_mallinfo2().uordblks grew by the heap's part (all but huge);
 *   - after every block is freed, allocated (and uordblks, and every
 *     class's live count) is back where it started.
 * And the reports: pallet_stats_print in JSON is well formed (balanced
 * braces and brackets outside strings, every key present, a number after
 * each) and the text report names every field.
 */
#include "footprint_util.h"

#include <pthread.h>

enum { THREADS = 4, PER_THREAD = 3000 };

static const size_t sizes[] = {
    1, 16, 17, 48, 100, 250, 512, 700, 1000, 1500, 4000, 9000, 20000,
    33000, 70000, 200000, 262144, /* small classes */
    300000, 1000000, 3000000,      /* large */
    6000000,                       /* huge */
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct worker {
  unsigned index;
  void *p[PER_THREAD];
  size_t n[PER_THREAD];
  int failed;
};

static struct worker workers[THREADS];

static size_t size_of(unsigned t, unsigned i)
{
  /* Mostly sizes up to 33000 bytes; the biggest classes every 53rd block,
   * a large block every 197th, a huge one once per thread. */
  if (i == 5)
    return sizes[NSIZES - 1];
  if (i % 197 == 3)
    return sizes[NSIZES - 2 - (i / 197) % 3];
  if (i % 53 == 7)
    return sizes[NSIZES - 5 - (i / 53) % 3];
  return sizes[(i * 7 + t) % (NSIZES - 7)];
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  unsigned i;
  for (i = 0; i < PER_THREAD; i++) {
    w->n[i] = size_of(w->index, i);
    w->p[i] = pallet_malloc(w->n[i]);
    if (w->p[i] == NULL) {
      w->failed = 1;
      return NULL;
    }
    memset(w->p[i], 0x11, w->n[i]);
  }
  /* Some churn that leaves nothing live: the counts must not see it. */
  for (i = 0; i < 500; i++)
    pallet_free(pallet_malloc(sizes[i % (NSIZES - 7)]));
  return NULL;
}

static int class_of_size(const pallet_stats_t *st, size_t usable)
{
  size_t c;
  for (c = 1; c < st->nclasses; c++)
    if (st->classes[c].size == usable)
      return (int)c;
  return -1;
}

static void check_json(const char *buf)
{
  static const char *const keys[] = {
      "allocated", "active", "resident", "mapped", "metadata", "tcache",
      "central", "free_spans", "purged", "large", "huge", "chunks",
      "threads", "classes", "size", "spans", "blocks", "live", "cached"};
  int depth = 0, in_str = 0, max_depth = 0;
  const char *c;
  size_t k;
  assert_true(buf[0] == '{');
  for (c = buf; *c; c++) {
    if (in_str) {
      if (*c == '"')
        in_str = 0;
      continue;
    }
    if (*c == '"')
      in_str = 1;
    else if (*c == '{' || *c == '[') {
      depth++;
      if (depth > max_depth)
        max_depth = depth;
    } else if (*c == '}' || *c == ']') {
      depth--;
      if (depth < 0)
        fail_msg("JSON closes more than it opens at offset %td", c - buf);
      if (depth == 0 && c[1] != '\0' && c[1] != '\n')
        fail_msg("JSON has trailing text at offset %td", c - buf + 1);
    }
  }
  assert_int_equal(in_str, 0);
  assert_int_equal(depth, 0);
  assert_true(max_depth >= 3); /* { "classes": [ { ... } ] } */
  for (k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    char quoted[64];
    const char *hit;
    snprintf(quoted, sizeof quoted, "\"%s\":", keys[k]);
    hit = strstr(buf, quoted);
    if (hit == NULL)
      fail_msg("JSON lacks the key %s:\n%s", quoted, buf);
    hit += strlen(quoted);
    while (*hit == ' ')
      hit++;
    if (!(*hit >= '0' && *hit <= '9') && *hit != '[')
      fail_msg("JSON key %s is followed by '%c', not a value", quoted, *hit);
  }
}

static size_t read_stream(FILE *f, char *buf, size_t cap)
{
  size_t n;
  rewind(f);
  n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  return n;
}

static void test_stats_exact(void **state)
{
  static pallet_stats_t st0, st1, st2;
  static size_t want_live[PALLET_NCLASSES_MAX];
  static char buf[65536];
  pthread_t t[THREADS];
  struct pallet_mallinfo2 mi0, mi1, mi2;
  size_t want_alloc = 0, want_large = 0, want_huge = 0, small_spans = 0;
  size_t rss0, rss1, c;
  unsigned i, j;
  FILE *f;
  (void)state;
  tu_watchdog("stats_exact", 60);

  /* The main thread's cache exists before the first snapshot. */
  pallet_free(pallet_malloc(8));
  pallet_malloc_trim(0);
  pallet_stats_get(&st0);
  mi0 = pallet_mallinfo2();
  rss0 = fp_rss();
  assert_true(st0.nclasses > 1 && st0.nclasses <= PALLET_NCLASSES_MAX);

  for (i = 0; i < THREADS; i++) {
    workers[i].index = i;
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &workers[i]), 0);
  }
  for (i = 0; i < THREADS; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(workers[i].failed, 0);
  }
  rss1 = fp_rss();
  pallet_stats_get(&st1);
  mi1 = pallet_mallinfo2();

  for (i = 0; i < THREADS; i++)
    for (j = 0; j < PER_THREAD; j++) {
      size_t u = pallet_malloc_usable_size(workers[i].p[j]);
      int cls;
      assert_true(u >= workers[i].n[j]);
      want_alloc += u;
      if (workers[i].n[j] > 4 * FP_MIB) {
        want_huge += u;
        continue;
      }
      cls = class_of_size(&st1, u);
      if (workers[i].n[j] <= 256 * FP_KIB) {
        if (cls < 0)
          fail_msg("no size class has the usable size %zu of a %zu-byte block", u,
                   workers[i].n[j]);
        want_live[cls]++;
      } else {
        want_large += u;
      }
    }

  print_message("    allocated %zu -> %zu (want +%zu); active %zu resident %zu mapped %zu; "
                "large %zu (+%zu) huge %zu (+%zu); rss +%.1f MiB, resident +%.1f MiB\n",
                st0.allocated, st1.allocated, want_alloc, st1.active, st1.resident,
                st1.mapped, st1.large, want_large, st1.huge, want_huge,
                fp_smib((long long)rss1 - (long long)rss0),
                fp_smib((long long)st1.resident - (long long)st0.resident));

  assert_int_equal(st1.allocated - st0.allocated, want_alloc);
  assert_int_equal(st1.large - st0.large, want_large);
  assert_int_equal(st1.huge - st0.huge, want_huge);
  for (c = 1; c < st1.nclasses; c++) {
    if (st1.classes[c].live - st0.classes[c].live != want_live[c])
      fail_msg("class %zu (%zu bytes): live %zu -> %zu, expected +%zu", c,
               st1.classes[c].size, st0.classes[c].live, st1.classes[c].live,
               want_live[c]);
    small_spans += st1.classes[c].spans;
    /* Every block is live, cached or central: never more than carved. */
    assert_true(st1.classes[c].live + st1.classes[c].cached + st1.classes[c].central ==
                st1.classes[c].blocks);
  }
  assert_true(st1.allocated <= st1.active);
  if (st1.active > st1.resident + small_spans * 8 * FP_KIB)
    fail_msg("active %zu > resident %zu + %zu small spans * 8 KiB", st1.active,
             st1.resident, small_spans);
  assert_true(st1.resident <= st1.mapped);
  assert_int_equal(st1.threads, st0.threads);
  /* pallet's resident set grew about as much as the process's did: every
   * byte of the blocks was written; the rest of the process (thread
   * stacks, glibc) adds a little. */
  {
    long long d_rss = (long long)rss1 - (long long)rss0;
    long long d_res = (long long)st1.resident - (long long)st0.resident;
    long long margin = (long long)(8 * FP_MIB) + d_rss / 10;
    if (d_res > d_rss + margin || d_res < d_rss - margin)
      fail_msg("pallet's resident grew by %.1f MiB, the process's RSS by %.1f MiB",
               fp_smib(d_res), fp_smib(d_rss));
    assert_true(d_res >= (long long)(want_alloc / 2));
  }
  /* mallinfo2: the heap's part of what is allocated (huge blocks are
   * counted as hblkhd, like glibc's mmapped chunks). */
  assert_int_equal(mi1.uordblks - mi0.uordblks, want_alloc - want_huge);
  assert_true(mi1.hblks >= mi0.hblks + THREADS);
  assert_true(mi1.hblkhd >= mi0.hblkhd + want_huge);

  /* The reports, while the heap is full. */
  f = tmpfile();
  assert_non_null(f);
  pallet_stats_print(f, PALLET_STATS_JSON);
  fflush(f);
  assert_true(read_stream(f, buf, sizeof buf) > 100);
  check_json(buf);
  fclose(f);
  f = tmpfile();
  assert_non_null(f);
  pallet_stats_print(f, PALLET_STATS_TEXT);
  fflush(f);
  read_stream(f, buf, sizeof buf);
  fclose(f);
  {
    static const char *const fields[] = {
        "allocated", "active", "resident", "mapped", "metadata", "tcache",
        "central", "free_spans", "purged", "large", "huge", "chunks", "threads",
        "class", "spans", "blocks", "live", "cached"};
    size_t k;
    for (k = 0; k < sizeof fields / sizeof fields[0]; k++)
      if (strstr(buf, fields[k]) == NULL)
        fail_msg("the text report does not name '%s':\n%s", fields[k], buf);
  }

  /* Free everything (from the main thread: remote frees). */
  for (i = 0; i < THREADS; i++)
    for (j = 0; j < PER_THREAD; j++)
      pallet_free(workers[i].p[j]);
  pallet_stats_get(&st2);
  mi2 = pallet_mallinfo2();
  assert_int_equal(st2.allocated, st0.allocated);
  assert_int_equal(st2.large, st0.large);
  assert_int_equal(st2.huge, st0.huge);
  assert_int_equal(mi2.uordblks, mi0.uordblks);
  for (c = 1; c < st2.nclasses; c++)
    assert_int_equal(st2.classes[c].live, st0.classes[c].live);
  assert_true(st2.allocated <= st2.active);
  assert_true(st2.resident <= st2.mapped);
  pallet_malloc_trim(0);
  pallet_stats_get(&st2);
  assert_int_equal(st2.allocated, st0.allocated);
  assert_int_equal(st2.tcache, 0);
  assert_int_equal(pallet_heap_check(), 0);
}

/* The statistics of an untouched size: a single live block is seen in
 * its class and nowhere else. */
static void test_stats_single_block(void **state)
{
  pallet_stats_t a, b;
  void *p;
  size_t u, c;
  int cls;
  (void)state;
  pallet_free(pallet_malloc(8));
  pallet_stats_get(&a);
  p = pallet_malloc(3000);
  assert_non_null(p);
  u = pallet_malloc_usable_size(p);
  pallet_stats_get(&b);
  cls = class_of_size(&b, u);
  assert_true(cls > 0);
  assert_int_equal(b.allocated - a.allocated, u);
  for (c = 1; c < b.nclasses; c++)
    assert_int_equal(b.classes[c].live - a.classes[c].live, (int)c == cls ? 1u : 0u);
  pallet_free(p);
  pallet_stats_get(&b);
  assert_int_equal(b.allocated, a.allocated);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_exact),
      cmocka_unit_test(test_stats_single_block),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
