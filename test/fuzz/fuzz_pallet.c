/*
 * fuzz_pallet.c — libFuzzer harness for pallet's malloc API.
 *
 * Each input is a little program: the bytes are decoded into a sequence of
 * operations (malloc, calloc, realloc, reallocarray, aligned_alloc,
 * posix_memalign, memalign, valloc, pvalloc, free, free_sized,
 * free_aligned_sized, malloc_usable_size, malloc_trim, heap checks) on 256
 * slots, each slot holding at most one live block.  Sizes are drawn from a
 * mix that reaches every part of the allocator: tiny requests, sizes around
 * each size-class boundary, page multiples, large spans (256 KiB..2 MiB),
 * blocks of 2..6 MiB (span-backed or mappings of their own) and the edges
 * between these ranges; alignments run from 1 byte to 1 MiB.  Only the
 * pallet_ names are called (the harness is built with PL_OVERRIDE=0), so
 * ASan's own malloc stays out of the way.
 *
 * Every live block carries a pattern derived from its slot, size and a
 * generation counter, written over its whole usable size when it is handed
 * out and checked in full before it is freed or reallocated.  Beyond that
 * the harness checks, for every block: non-NULL for sane sizes, 16-byte and
 * requested alignment, malloc_usable_size >= size, no overlap with any
 * other live block, calloc memory zero over the whole request, the prefix
 * kept by realloc, the documented error returns (ENOMEM, EINVAL) and that
 * free keeps errno.  At the end of each input every block is freed and
 * pallet_heap_check() must return 0 with no live bytes left in the stats.
 *
 * A failure prints one line starting "fuzz_pallet: FAIL" and traps.  Set
 * FUZZ_PALLET_TRACE=1 to print each decoded operation (to replay a crash
 * artifact by hand; see doc/fuzzing.md).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pallet.h"

/* Prototypes for the entry points libFuzzer calls (-Wmissing-prototypes). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOTS 256
#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
/* Requested bytes allowed live at once: keeps the process well under
 * libFuzzer's -rss_limit_mb even with pallet's retained free spans. */
#define LIVE_BUDGET (96 * MIB)
#define HUGE_MAX (6 * MIB)

enum alloc_fn {
  FN_MALLOC, FN_CALLOC, FN_REALLOC, FN_REALLOCARRAY, FN_ALIGNED_ALLOC,
  FN_POSIX_MEMALIGN, FN_MEMALIGN, FN_VALLOC, FN_PVALLOC
};
static const char *const fn_name[] = {
    "malloc", "calloc", "realloc", "reallocarray", "aligned_alloc",
    "posix_memalign", "memalign", "valloc", "pvalloc"};

typedef struct slot {
  unsigned char *p;   /* NULL when the slot is empty */
  size_t size;        /* bytes requested */
  size_t usable;      /* malloc_usable_size when handed out */
  size_t align;       /* alignment passed to aligned_alloc, else 0 */
  size_t charge;      /* counted against LIVE_BUDGET: size, plus a big
                         alignment (which may cost that much address space) */
  uint64_t seed;      /* of the pattern */
  enum alloc_fn fn;   /* how it was obtained */
} slot_t;

static slot_t slots[NSLOTS];
static size_t live_bytes;
static uint64_t generation;
static unsigned long op_index;
static bool trace;
static size_t page_size; /* valloc and pvalloc align to it */

/* ---- reporting ------------------------------------------------------ */

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "fuzz_pallet: FAIL at op %lu: ", op_index);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  __builtin_trap();
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...) {
  if (!trace) return;
  va_list ap;
  fprintf(stderr, "op %4lu: ", op_index);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* ---- the input ------------------------------------------------------ */

typedef struct reader {
  const uint8_t *d;
  size_t n, i;
} reader_t;

/* Past the end every read gives 0, so a truncated op is still valid. */
static unsigned u8(reader_t *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static unsigned u16(reader_t *r) { return u8(r) | u8(r) << 8; }
static size_t u24(reader_t *r) { return (size_t)u16(r) | (size_t)u8(r) << 16; }

/* The size classes as documented in sizeclass.h, computed here on their
 * own so that the harness does not trust pallet's tables. */
static size_t class_sizes[96];
static size_t nclass_sizes;

static void init_class_sizes(void) {
  nclass_sizes = 0;
  for (size_t s = 16; s <= 128; s += 16) class_sizes[nclass_sizes++] = s;
  for (size_t base = 128; base <= 128 * KIB; base *= 2)
    for (size_t k = 1; k <= 8; k++) class_sizes[nclass_sizes++] = base + k * (base / 8);
}

static size_t add_delta(size_t base, long delta) {
  if (delta < 0 && (size_t)-delta > base) return 0;
  return delta < 0 ? base - (size_t)-delta : base + (size_t)delta;
}

/* A request size.  The first byte picks the range so that every layer of
 * the allocator is a few mutations away. */
static size_t read_size(reader_t *r) {
  static const size_t edges[] = {256 * KIB, 2 * MIB, 4 * MIB, 1 * MIB, 512 * KIB,
                                 64 * KIB, 8 * KIB, 4 * KIB};
  unsigned kind = u8(r) % 16;
  switch (kind) {
    case 0: case 1: case 2: case 3: /* tiny */
      return u8(r) % 129;
    case 4: case 5: case 6: { /* around a size-class boundary */
      size_t c = class_sizes[u8(r) % nclass_sizes];
      return add_delta(c, (long)(u8(r) % 33) - 16);
    }
    case 7: case 8: /* anywhere in the small range */
      return u24(r) % (256 * KIB + 1);
    case 9: /* around a multiple of 4 KiB (so of every page size) */
      return add_delta((u8(r) % 129) * 4 * KIB, (long)(u8(r) % 33) - 16);
    case 10: case 11: /* large: whole spans */
      return 256 * KIB + u24(r) % (2 * MIB - 256 * KIB + 1);
    case 12: { /* around the edges between layers */
      size_t e = edges[u8(r) % (sizeof edges / sizeof edges[0])];
      return add_delta(e, (long)(u16(r) % 16385) - 8192);
    }
    case 13: /* huge: mappings of their own */
      return 2 * MIB + u24(r) % (HUGE_MAX - 2 * MIB + 1);
    default: /* medium */
      return u16(r);
  }
}

/* An alignment: a power of two from 1 to 1 MiB, or (rarely) any value. */
static size_t read_align(reader_t *r) {
  unsigned b = u8(r);
  if (b >= 0xf8) return u16(r) * (b - 0xf7) % (MIB + 1);
  return (size_t)1 << (b % 21);
}

/* ---- patterns ------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t make_seed(unsigned slot, size_t size) {
  return mix64(((uint64_t)slot << 48) ^ (uint64_t)size ^ mix64(++generation));
}

/* Word k of a block's pattern (a macro: the bulk loops must not call out). */
#define pattern_word(seed, k) ((seed) ^ ((uint64_t)(k)*0x9e3779b97f4a7c15ULL))

/* The hot loops over block contents: kept out of libFuzzer's coverage (its
 * comparison hooks would cost more than the loop) and out of ASan's checks
 * (pallet's memory is its own mappings, unknown to ASan anyway). */
#define BULK __attribute__((noinline, no_sanitize("coverage", "address")))

BULK static void fill(unsigned char *p, size_t n, uint64_t seed) {
  size_t k = 0;
  for (; (k + 1) * 8 <= n; k++) {
    uint64_t w = pattern_word(seed, k);
    memcpy(p + k * 8, &w, 8);
  }
  if (k * 8 < n) {
    uint64_t w = pattern_word(seed, k);
    memcpy(p + k * 8, &w, n - k * 8);
  }
}

/* Offset of the first byte of p[0..n) that differs from the pattern, or n. */
BULK static size_t mismatch(const unsigned char *p, size_t n, uint64_t seed) {
  size_t off = 0;
  for (; off + 8 <= n; off += 8) {
    uint64_t got;
    memcpy(&got, p + off, 8);
    if (got != pattern_word(seed, off / 8)) break;
  }
  return off < n ? off : n;
}

/* Offset of the first nonzero byte of p[0..n), or n. */
BULK static size_t first_nonzero(const unsigned char *p, size_t n) {
  size_t off = 0;
  for (; off + 8 <= n; off += 8) {
    uint64_t w;
    memcpy(&w, p + off, 8);
    if (w != 0) break;
  }
  while (off < n && p[off] == 0) off++;
  return off;
}

/* Checks the first n bytes of p against the pattern; fails with the first
 * byte that differs. */
static void verify(const unsigned char *p, size_t n, uint64_t seed, const char *what,
                   unsigned slot) {
  for (size_t off = mismatch(p, n, seed) & ~(size_t)7; off < n; off += 8) {
    uint64_t w = pattern_word(seed, off / 8), got = 0;
    size_t len = n - off < 8 ? n - off : 8;
    memcpy(&got, p + off, len);
    if (len < 8) w &= ((uint64_t)1 << (len * 8)) - 1;
    if (got != w) {
      size_t b = 0;
      while (((got >> (b * 8)) & 0xff) == ((w >> (b * 8)) & 0xff)) b++;
      fail("%s: slot %u block %p (size %zu, usable %zu, from %s): byte %zu is 0x%02x, "
           "expected 0x%02x (word there 0x%016llx)",
           what, slot, (const void *)p, slots[slot].size, slots[slot].usable,
           fn_name[slots[slot].fn], off + b, (unsigned)((got >> (b * 8)) & 0xff),
           (unsigned)((w >> (b * 8)) & 0xff), (unsigned long long)got);
    }
  }
}

static void verify_slot(unsigned i, const char *what) {
  slot_t *s = &slots[i];
  if (s->p == NULL) return;
  verify(s->p, s->usable, s->seed, what, i);
}

/* ---- taking blocks in and out of slots ------------------------------ */

/* A live slot other than i whose block overlaps [p, p + n), or NSLOTS. */
BULK static unsigned overlapping(unsigned i, const unsigned char *p, size_t n) {
  for (unsigned j = 0; j < NSLOTS; j++) {
    const slot_t *o = &slots[j];
    if (o->p != NULL && j != i && p < o->p + o->usable && o->p < p + n) return j;
  }
  return NSLOTS;
}

/* Checks a block just handed out for slot i and records it: alignment,
 * usable size, no overlap; then writes its pattern over the usable size
 * (after checking the zeroing of calloc). */
static void adopt(unsigned i, void *ptr, size_t size, size_t align, enum alloc_fn fn,
                  size_t zeroed) {
  unsigned char *p = ptr;
  uintptr_t a = (uintptr_t)p;
  if (a % 16 != 0) fail("%s(%zu) returned %p: not 16-byte aligned", fn_name[fn], size, ptr);
  if (align > 1 && a % align != 0)
    fail("%s(align %zu, %zu) returned %p: not aligned", fn_name[fn], align, size, ptr);
  size_t usable = pallet_malloc_usable_size(p);
  if (usable < size)
    fail("%s(%zu) returned %p with malloc_usable_size %zu", fn_name[fn], size, ptr, usable);
  unsigned j = overlapping(i, p, usable);
  if (j < NSLOTS) {
    const slot_t *o = &slots[j];
    fail("%s(%zu) returned %p (usable %zu), overlapping slot %u's block %p (usable %zu)",
           fn_name[fn], size, ptr, usable, j, (void *)o->p, o->usable);
  }
  size_t k = first_nonzero(p, zeroed);
  if (k < zeroed)
    fail("%s(%zu) returned %p whose byte %zu is 0x%02x, not zero", fn_name[fn], size, ptr,
           k, p[k]);
  slot_t *s = &slots[i];
  s->p = p;
  s->size = size;
  s->usable = usable;
  s->align = fn == FN_ALIGNED_ALLOC ? align : 0;
  s->fn = fn;
  s->charge = size + (align > 4 * KIB ? align : 0);
  s->seed = make_seed(i, size);
  fill(p, usable, s->seed);
  live_bytes += s->charge;
  note("  -> slot %u = %p usable %zu", i, ptr, usable);
}

static void forget(unsigned i) {
  live_bytes -= slots[i].charge;
  memset(&slots[i], 0, sizeof slots[i]);
}

/* Frees slot i (verifying its pattern first) with the form picked by how. */
static void release(unsigned i, unsigned how) {
  slot_t *s = &slots[i];
  if (s->p == NULL) return;
  verify_slot(i, "before free");
  errno = 4321;
  switch (how % 3) {
    case 0:
      note("free slot %u %p", i, (void *)s->p);
      pallet_free(s->p);
      break;
    case 1: {
      /* free_sized accepts the size asked for or anything up to the usable
       * size. */
      size_t sz = (how & 4) ? s->usable : s->size;
      note("free_sized slot %u %p %zu", i, (void *)s->p, sz);
      pallet_free_sized(s->p, sz);
      break;
    }
    default:
      if (s->align != 0) {
        note("free_aligned_sized slot %u %p %zu %zu", i, (void *)s->p, s->align, s->size);
        pallet_free_aligned_sized(s->p, s->align, s->size);
      } else {
        note("free_sized slot %u %p %zu", i, (void *)s->p, s->size);
        pallet_free_sized(s->p, s->size);
      }
      break;
  }
  if (errno != 4321) fail("free of %p changed errno to %d", (void *)s->p, errno);
  forget(i);
}

/* Keeps the live total within budget: a request that would pass it is cut
 * down to a small one. */
static size_t budget(size_t size, unsigned i) {
  size_t held = slots[i].p ? slots[i].charge : 0;
  if (live_bytes - held + size > LIVE_BUDGET) return size % (64 * KIB);
  return size;
}

/* ---- the operations ------------------------------------------------- */

static void op_malloc(reader_t *r, unsigned i) {
  size_t n = budget(read_size(r), i);
  release(i, 0);
  note("malloc(%zu) slot %u", n, i);
  void *p = pallet_malloc(n);
  if (p == NULL) fail("malloc(%zu) returned NULL", n);
  adopt(i, p, n, 0, FN_MALLOC, 0);
}

static void op_calloc(reader_t *r, unsigned i) {
  unsigned sel = u8(r);
  if (sel >= 0xfc) {
    /* nmemb * size overflows: NULL and ENOMEM. */
    size_t nm = SIZE_MAX / 2 + 1 + (sel & 3), sz = 2 + (sel & 1);
    note("calloc(%zu, %zu) overflowing", nm, sz);
    errno = 0;
    void *p = pallet_calloc(nm, sz);
    if (p != NULL || errno != ENOMEM)
      fail("calloc(%zu, %zu) gave %p errno %d, expected NULL ENOMEM", nm, sz, p, errno);
    return;
  }
  size_t nmemb = 1 + sel % 16;
  size_t total = budget(read_size(r), i);
  size_t elem = total / nmemb;
  if (elem == 0) nmemb = total, elem = 1; /* keeps calloc(0, 1) reachable */
  size_t n = nmemb * elem;
  release(i, sel >> 4);
  note("calloc(%zu, %zu) slot %u", nmemb, elem, i);
  void *p = pallet_calloc(nmemb, elem);
  if (p == NULL) fail("calloc(%zu, %zu) returned NULL", nmemb, elem);
  adopt(i, p, n, 0, FN_CALLOC, n);
}

/* realloc and reallocarray: the kept prefix must hold the old pattern. */
static void op_realloc(reader_t *r, unsigned i, bool array) {
  slot_t *s = &slots[i];
  unsigned sel = u8(r);
  if (sel >= 0xfa && s->p != NULL) {
    /* A request too large to honour: NULL, ENOMEM, the block untouched. */
    void *q;
    errno = 0;
    if (array) {
      note("reallocarray(slot %u, overflowing)", i);
      q = pallet_reallocarray(s->p, SIZE_MAX / 4 + 1, 5);
    } else {
      size_t n = (size_t)PTRDIFF_MAX + 1 + (sel & 1) * ((size_t)PTRDIFF_MAX);
      note("realloc(slot %u, %zu)", i, n);
      q = pallet_realloc(s->p, n);
    }
    if (q != NULL || errno != ENOMEM)
      fail("%s of %p to an impossible size gave %p errno %d, expected NULL ENOMEM",
           array ? "reallocarray" : "realloc", (void *)s->p, q, errno);
    verify_slot(i, "after failed realloc");
    return;
  }
  size_t n = budget(read_size(r), i);
  size_t nmemb = 1, elem = n;
  if (array) {
    nmemb = 1 + sel % 8;
    elem = n / nmemb;
    if (elem == 0) nmemb = n, elem = 1;
    n = nmemb * elem;
  }
  if (s->p != NULL) verify_slot(i, "before realloc");
  unsigned char *old = s->p;
  size_t keep = old ? (s->size < n ? s->size : n) : 0;
  uint64_t old_seed = s->seed;
  size_t old_size = s->size;
  note("%s(slot %u %p, %zu) (old size %zu)", array ? "reallocarray" : "realloc", i,
       (void *)old, n, old_size);
  void *q = array ? pallet_reallocarray(old, nmemb, elem) : pallet_realloc(old, n);
  if (n == 0 && old != NULL) {
    /* glibc semantics: realloc(p, 0) frees p and returns NULL. */
    if (q != NULL) fail("realloc(%p, 0) returned %p, expected NULL", (void *)old, q);
    forget(i);
    return;
  }
  if (q == NULL) fail("realloc(%p, %zu) returned NULL", (void *)old, n);
  if (old != NULL) {
    /* The block now lives at q: check the prefix it kept. */
    const char *what = q == old ? "realloc in place kept prefix" : "realloc moved prefix";
    slots[i].usable = keep; /* verify() reports against these */
    verify(q, keep, old_seed, what, i);
    forget(i);
  }
  adopt(i, q, n, 0, array ? FN_REALLOCARRAY : FN_REALLOC, 0);
}

static void op_aligned(reader_t *r, unsigned i, enum alloc_fn fn) {
  size_t a = read_align(r);
  size_t n = budget(read_size(r), i);
  if (a > 4 * KIB && budget(n + a, i) != n + a) a = 4 * KIB; /* over budget */
  unsigned how = u8(r);
  release(i, how);
  void *p = NULL;
  switch (fn) {
    case FN_ALIGNED_ALLOC:
      note("aligned_alloc(%zu, %zu) slot %u", a, n, i);
      errno = 0;
      p = pallet_aligned_alloc(a, n);
      if (a == 0 || (a & (a - 1)) != 0) {
        if (p != NULL || errno != EINVAL)
          fail("aligned_alloc(%zu, %zu) gave %p errno %d, expected NULL EINVAL", a, n, p,
               errno);
        return;
      }
      break;
    case FN_POSIX_MEMALIGN: {
      note("posix_memalign(%zu, %zu) slot %u", a, n, i);
      void *out = &slots[i]; /* a sentinel that must stay untouched on error */
      int rc = pallet_posix_memalign(&out, a, n);
      bool valid = a != 0 && (a & (a - 1)) == 0 && a % sizeof(void *) == 0;
      if (!valid) {
        if (rc != EINVAL || out != &slots[i])
          fail("posix_memalign(%zu, %zu) gave %d and %p, expected EINVAL and no store", a,
               n, rc, out);
        return;
      }
      if (rc != 0) fail("posix_memalign(%zu, %zu) failed with %d", a, n, rc);
      p = out;
      break;
    }
    case FN_MEMALIGN:
      note("memalign(%zu, %zu) slot %u", a, n, i);
      p = pallet_memalign(a, n);
      /* memalign rounds an odd alignment up to a power of two. */
      if (a & (a - 1)) {
        size_t up = 1;
        while (up < a) up <<= 1;
        a = up;
      }
      break;
    case FN_VALLOC:
      a = page_size;
      note("valloc(%zu) slot %u", n, i);
      p = pallet_valloc(n);
      break;
    default: /* FN_PVALLOC */
      a = page_size;
      note("pvalloc(%zu) slot %u", n, i);
      p = pallet_pvalloc(n);
      break;
  }
  if (p == NULL) fail("%s(align %zu, %zu) returned NULL", fn_name[fn], a, n);
  adopt(i, p, n, a, fn, 0);
}

static void op_usable(unsigned i) {
  slot_t *s = &slots[i];
  if (s->p == NULL) {
    if (pallet_malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0");
    return;
  }
  note("malloc_usable_size(slot %u %p)", i, (void *)s->p);
  size_t u = pallet_malloc_usable_size(s->p);
  if (u != s->usable)
    fail("malloc_usable_size(%p) is %zu, was %zu when the block was handed out",
         (void *)s->p, u, s->usable);
  verify_slot(i, "usable-size check");
}

static void verify_all(const char *what) {
  for (unsigned j = 0; j < NSLOTS; j++) verify_slot(j, what);
}

static void heap_check(const char *when) {
  if (pallet_heap_check() != 0) fail("pallet_heap_check() failed %s", when);
}

static void op_trim(reader_t *r) {
  size_t pad = u8(r) * 4 * KIB;
  note("malloc_trim(%zu)", pad);
  int rc = pallet_malloc_trim(pad);
  if (rc != 0 && rc != 1) fail("malloc_trim returned %d", rc);
  verify_all("after malloc_trim");
}

static void op_check(void) {
  note("heap check");
  heap_check("with blocks live");
  verify_all("heap check op");
}

/* ---- libFuzzer entry points ----------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *t = getenv("FUZZ_PALLET_TRACE");
  trace = t != NULL && *t != '\0' && *t != '0';
  init_class_sizes();
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader_t rd = {data, size, 0};
  reader_t *r = &rd;
  generation = 0;
  op_index = 0;
  if (nclass_sizes == 0) LLVMFuzzerInitialize(NULL, NULL);
  while (r->i < r->n) {
    op_index++;
    unsigned op = u8(r) % 32;
    unsigned i = u8(r) % NSLOTS;
    switch (op) {
      case 0: case 1: case 2: case 3: case 4: op_malloc(r, i); break;
      case 5: case 6: op_calloc(r, i); break;
      case 7: case 8: case 9: op_realloc(r, i, false); break;
      case 10: op_realloc(r, i, true); break;
      case 11: case 12: op_aligned(r, i, FN_ALIGNED_ALLOC); break;
      case 13: op_aligned(r, i, FN_POSIX_MEMALIGN); break;
      case 14: op_aligned(r, i, FN_MEMALIGN); break;
      case 15: op_aligned(r, i, (u8(r) & 1) ? FN_VALLOC : FN_PVALLOC); break;
      case 16: case 17: case 18: case 19: case 20: case 21: case 22:
        release(i, u8(r));
        break;
      case 23: case 24: op_usable(i); break;
      case 25: op_trim(r); break;
      case 26: op_check(); break;
      default: /* 27..31: free a run of slots, to make room and churn */
      {
        unsigned count = 1 + u8(r) % 32;
        for (unsigned k = 0; k < count; k++) release((i + k) % NSLOTS, k);
        break;
      }
    }
  }
  op_index++;
  note("end: free everything");
  for (unsigned j = 0; j < NSLOTS; j++) release(j, j);
  if (live_bytes != 0) fail("harness bookkeeping: %zu live bytes left", live_bytes);
  heap_check("after freeing everything");
  pallet_stats_t st;
  pallet_stats_get(&st);
  if (st.allocated != 0 || st.large != 0 || st.huge != 0)
    fail("after freeing everything the stats still count allocated %zu, large %zu, "
         "huge %zu bytes",
         st.allocated, st.large, st.huge);
  return 0;
}
