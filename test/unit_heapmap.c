/*
 * unit_heapmap.c — unit tests of pallet_heap_map() (src/heapmap.c).
 *
 * A known heap (20 MiB of 100-byte blocks with every other one freed, a
 * few large blocks, one huge block) is drawn into a memory stream, and the
 * SVG is checked against an independent walk of the span heap and against
 * pallet_stats_get(): well-formed (every tag closed, in order), one span
 * rectangle per span, the rows tiling their chunks page by page, the free
 * counts of the 112-byte class, the legend, the totals line, the huge
 * blocks.  Also: a stream whose every write calls back into pallet (a
 * malloc and a stats snapshot that takes every lock) — it would deadlock,
 * caught by the watchdog, if anything were written under pallet's locks;
 * more chunks than are drawn; write errors reported as -1 with errno.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include "central.h"
#include "common.h"
#include "heapmap.h"
#include "large.h"
#include "lifecycle.h"
#include "sizeclass.h"
#include "span.h"

/* ---- what the heap holds, counted independently --------------------- */

struct census {
  size_t chunks, spans;  /* spans: of the first PL_HEAPMAP_MAX_CHUNKS chunks */
  size_t large, free;    /* LARGE spans; FREE or BUSY spans */
  size_t small_cls, free_cls; /* SMALL spans of class cls, their free blocks */
  unsigned cls;
  const pl_chunk_t *cur;
};

static void census_fn(const pl_chunk_t *c, const pl_span_t *s, void *arg) {
  struct census *k = arg;
  if (c != k->cur) {
    k->cur = c;
    k->chunks++;
  }
  if (k->chunks > PL_HEAPMAP_MAX_CHUNKS) return;
  k->spans++;
  if (s->state == PL_SPAN_LARGE) k->large++;
  if (s->state == PL_SPAN_FREE || s->state == PL_SPAN_BUSY) k->free++;
  if (s->state == PL_SPAN_SMALL && s->cls == k->cls) {
    k->small_cls++;
    k->free_cls += s->nfree;
  }
}

static struct census take_census(unsigned cls) {
  struct census k = {.cls = cls};
  pl_central_lock_all();
  pl_span_walk(census_fn, &k);
  pl_central_unlock_all();
  return k;
}

/* ---- reading the SVG ------------------------------------------------- */

static size_t count(const char *s, const char *what) {
  size_t n = 0, len = strlen(what);
  for (const char *p = strstr(s, what); p; p = strstr(p + len, what)) n++;
  return n;
}

/* Every element closed, in order; no stray '&'; starts with <svg and ends
 * with </svg>. */
static void check_well_formed(const char *svg) {
  char stack[16][16];
  int depth = 0;
  assert_true(strncmp(svg, "<svg ", 5) == 0);
  size_t len = strlen(svg);
  assert_true(len > 7 && strcmp(svg + len - 7, "</svg>\n") == 0);
  assert_null(strchr(svg, '&'));
  for (const char *p = strchr(svg, '<'); p; p = strchr(p, '<')) {
    const char *e = strchr(p, '>');
    assert_non_null(e);
    assert_null(memchr(p + 1, '<', (size_t)(e - p - 1)));
    size_t n = strcspn(p + 1 + (p[1] == '/'), " />");
    assert_true(n > 0 && n < sizeof stack[0]);
    if (p[1] == '/') {
      assert_true(depth > 0);
      depth--;
      assert_true(strlen(stack[depth]) == n && memcmp(stack[depth], p + 2, n) == 0);
    } else if (e[-1] != '/') {
      assert_true(depth < 16);
      memcpy(stack[depth], p + 1, n);
      stack[depth++][n] = 0;
    }
    p = e + 1;
  }
  assert_int_equal(depth, 0);
  /* Every rect closed: self-closed (legend) or with </rect> (spans). */
  assert_int_equal(count(svg, "<rect "), count(svg, "</rect>") + count(svg, "\"/>") -
                                            count(svg, "<line "));
}

/* The rows: in each chunk's group, span rectangles start where the one
 * before ended and cover the 512 pages exactly.  Returns the rows seen. */
static size_t check_rows(const char *svg) {
  size_t rows = 0;
  for (const char *g = strstr(svg, "<g transform="); g; g = strstr(g + 1, "<g transform=")) {
    const char *end = strstr(g, "</g>");
    assert_non_null(end);
    unsigned next = 0;
    for (const char *r = strstr(g, "<rect "); r && r < end; r = strstr(r + 1, "<rect ")) {
      unsigned x, w;
      const char *px = strstr(r, " x=\"");
      assert_non_null(px);
      assert_int_equal(sscanf(px, " x=\"%u\" width=\"%u.5\"", &x, &w), 2);
      assert_int_equal(x, next * 2);
      assert_true(w % 2 == 1);
      next += (w + 1) / 2;
    }
    assert_int_equal(next, PL_CHUNK_PAGES);
    rows++;
  }
  return rows;
}

/* The byte count in parentheses after "label " in the totals line. */
static size_t total_of(const char *svg, const char *label) {
  const char *line = strstr(svg, "id=\"totals\"");
  assert_non_null(line);
  const char *p = strstr(line, label);
  assert_non_null(p);
  p = strchr(p, '(');
  assert_non_null(p);
  return (size_t)strtoull(p + 1, NULL, 10);
}

/* Sum of the "N free" of the span tooltips of class size `size`. */
static size_t free_in_titles(const char *svg, unsigned size, size_t *spans) {
  char key[48];
  snprintf(key, sizeof key, ": class %u B, ", size);
  size_t total = 0;
  *spans = 0;
  for (const char *p = strstr(svg, key); p; p = strstr(p + 1, key)) {
    unsigned nblocks, nfree;
    assert_int_equal(sscanf(p + strlen(key), "%u blocks, %u free", &nblocks, &nfree), 2);
    assert_true(nfree <= nblocks);
    total += nfree;
    ++*spans;
  }
  return total;
}

static char *draw(size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  assert_non_null(f);
  assert_int_equal(pallet_heap_map(f), 0);
  assert_int_equal(fclose(f), 0);
  assert_non_null(buf);
  return buf;
}

/* ---- tests ------------------------------------------------------------ */

static int setup(void **state) {
  (void)state;
  pl_init_slow();
  pl_ensure_init();
  return 0;
}

#define NSMALL ((size_t)20 * 1024 * 1024 / 100)

static void test_known_heap(void **state) {
  (void)state;
  void **small = calloc(NSMALL, sizeof *small);
  assert_non_null(small);
  for (size_t i = 0; i < NSMALL; i++) assert_non_null(small[i] = pallet_malloc(100));
  for (size_t i = 0; i < NSMALL; i += 2) pallet_free(small[i]);
  static const size_t large_sizes[] = {300 << 10, 1 << 20, 3 << 20};
  void *large[3];
  for (size_t i = 0; i < 3; i++) assert_non_null(large[i] = pallet_malloc(large_sizes[i]));
  void *huge = pallet_malloc((size_t)24 << 20);
  assert_non_null(huge);

  size_t len;
  char *svg = draw(&len);
  unsigned cls = pl_size_class(100);
  struct census k = take_census(cls);
  pallet_stats_t st;
  assert_int_equal(pallet_stats_get(&st), 0);

  check_well_formed(svg);
  assert_int_equal(strlen(svg), len);
  /* One rectangle per span, one row per chunk. */
  assert_true(k.chunks >= 5 && k.chunks <= PL_HEAPMAP_MAX_CHUNKS);
  assert_int_equal(count(svg, "</rect>"), k.spans);
  assert_int_equal(check_rows(svg), k.chunks);
  assert_int_equal(count(svg, "<rect class=\"L\" x="), k.large);
  assert_true(k.large >= 3);
  /* The 100-byte blocks: half of each span's blocks free, or so. */
  size_t spans_cls;
  assert_int_equal(free_in_titles(svg, pl_class_info[cls].size, &spans_cls), k.free_cls);
  assert_int_equal(spans_cls, k.small_cls);
  assert_true(k.free_cls >= NSMALL / 2 - 4096 && k.free_cls <= NSMALL / 2 + 4096);
  assert_null(strstr(svg, "id=\"more\""));
  /* Legend. */
  assert_non_null(strstr(svg, "id=\"legend\""));
  assert_int_equal(count(svg, "<rect class=\"o") + count(svg, "<rect class=\"D\"") +
                       count(svg, "<rect class=\"C\"") + count(svg, "<rect class=\"B\""),
                   k.spans - k.large);
  /* small spans and the 11 shades of the legend */
  assert_int_equal(count(svg, "class=\"o"), k.spans - k.large - k.free + 11);
  for (const char *w = "small spans\0large: \0free, dirty: \0free, purged: \0being purged: \0";
       *w; w += strlen(w) + 1)
    assert_non_null(strstr(svg, w));
  /* Totals, against pallet_stats_get (nothing ran in between; resident
   * may move by a huge page if the kernel collapses one meanwhile). */
  assert_int_equal(total_of(svg, "allocated "), st.allocated);
  assert_int_equal(total_of(svg, "active "), st.active);
  assert_int_equal(total_of(svg, "mapped "), st.mapped);
  size_t res = total_of(svg, "resident ");
  assert_true(res + (2u << 20) >= st.resident && res <= st.resident + (2u << 20));
  assert_true(st.allocated >= NSMALL / 2 * 100 + ((size_t)28 << 20));
  /* Huge blocks. */
  const char *h = strstr(svg, "id=\"huge\"");
  assert_non_null(h);
  char want[96];
  snprintf(want, sizeof want, ">1 live huge block: ");
  assert_non_null(strstr(h, want));
  snprintf(want, sizeof want, "usable (%zu B)", st.huge);
  assert_non_null(strstr(h, want));

  free(svg);
  pallet_free(huge);
  for (size_t i = 0; i < 3; i++) pallet_free(large[i]);
  for (size_t i = 1; i < NSMALL; i += 2) pallet_free(small[i]);
  free(small);
  assert_int_equal(pallet_heap_check(), 0);
}

/* A stream whose writes call into pallet: a stats snapshot takes every
 * central lock and the heap lock, and a large block the heap lock. */
struct sink {
  char *buf;
  size_t len, cap, calls;
  int fail_errno; /* when non-zero, every write fails with it */
};

static void call_into_pallet(void) {
  pallet_stats_t st;
  pallet_stats_get(&st);
  void *a = pallet_malloc(100), *b = pallet_malloc(40000), *c = pallet_malloc(600 << 10);
  assert_true(a && b && c);
  pallet_free(c);
  pallet_free(b);
  pallet_free(a);
}

static ssize_t sink_write(void *cookie, const char *data, size_t n) {
  struct sink *s = cookie;
  s->calls++;
  if (s->fail_errno) {
    errno = s->fail_errno;
    return -1;
  }
  call_into_pallet();
  if (s->len + n + 1 > s->cap) {
    s->cap = (s->len + n + 1) * 2;
    s->buf = realloc(s->buf, s->cap);
    assert_non_null(s->buf);
  }
  memcpy(s->buf + s->len, data, n);
  s->len += n;
  s->buf[s->len] = 0;
  return (ssize_t)n;
}

static FILE *sink_open(struct sink *s) {
  cookie_io_functions_t io = {.write = sink_write};
  FILE *f = fopencookie(s, "w", io);
  assert_non_null(f);
  assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
  return f;
}

static void test_writes_without_locks(void **state) {
  (void)state;
  void *p[3000];
  for (size_t i = 0; i < 3000; i++) assert_non_null(p[i] = pallet_malloc(16 + (i % 40) * 64));
  for (size_t i = 0; i < 3000; i += 3) pallet_free(p[i]);
  /* The spans the first test emptied and its classes kept (central.c)
   * go back to the heap now, not in a decay pass run by the writes. */
  pallet_malloc_trim(0);
  call_into_pallet(); /* once before: the spans the writes use exist */
  struct sink s = {0};
  FILE *f = sink_open(&s);
  tu_watchdog("unit_heapmap: write under a lock", 60);
  assert_int_equal(pallet_heap_map(f), 0);
  tu_watchdog("unit_heapmap", 120);
  fclose(f);
  assert_true(s.calls > 100); /* unbuffered: every piece went through */
  check_well_formed(s.buf);
  assert_int_equal(count(s.buf, "</rect>"), take_census(0).spans);
  free(s.buf);
  for (size_t i = 0; i < 3000; i++)
    if (i % 3) pallet_free(p[i]);
}

/* More chunks than are drawn: the rest summed in one line. */
static void test_many_chunks(void **state) {
  (void)state;
  enum { N = PL_HEAPMAP_MAX_CHUNKS + 8 };
  void *p[N];
  for (size_t i = 0; i < N; i++) assert_non_null(p[i] = pallet_malloc((size_t)3500 << 10));
  size_t len;
  char *svg = draw(&len);
  struct census k = take_census(0);
  check_well_formed(svg);
  assert_true(k.chunks > PL_HEAPMAP_MAX_CHUNKS);
  assert_int_equal(check_rows(svg), PL_HEAPMAP_MAX_CHUNKS);
  assert_int_equal(count(svg, "</rect>"), k.spans);
  char want[64];
  snprintf(want, sizeof want, "... and %zu more chunk", k.chunks - PL_HEAPMAP_MAX_CHUNKS);
  assert_non_null(strstr(svg, want));
  snprintf(want, sizeof want, "%zu heap chunks of 4 MiB (%d drawn", k.chunks,
           PL_HEAPMAP_MAX_CHUNKS);
  assert_non_null(strstr(svg, want));
  free(svg);
  for (size_t i = 0; i < N; i++) pallet_free(p[i]);
}

static void test_errors(void **state) {
  (void)state;
  errno = 0;
  assert_int_equal(pallet_heap_map(NULL), -1);
  assert_int_equal(errno, EINVAL);
  /* A stream that refuses every write. */
  struct sink s = {.fail_errno = ENOSPC};
  FILE *f = sink_open(&s);
  errno = 0;
  assert_int_equal(pallet_heap_map(f), -1);
  assert_int_equal(errno, ENOSPC);
  assert_true(s.calls >= 1);
  fclose(f);
  /* A stream open for reading only. */
  f = fopen("/dev/null", "r");
  assert_non_null(f);
  errno = 0;
  assert_int_equal(pallet_heap_map(f), -1);
  assert_int_equal(errno, EBADF);
  fclose(f);
  free(s.buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_heap),
      cmocka_unit_test(test_writes_without_locks),
      cmocka_unit_test(test_many_chunks),
      cmocka_unit_test(test_errors),
  };
  tu_watchdog("unit_heapmap", 120);
  return cmocka_run_group_tests(tests, setup, NULL);
}
