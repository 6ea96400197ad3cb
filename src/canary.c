/*
 * canary.c — canaries after blocks, PALLET_CANARY's quarantine of freed
 * blocks, and junk in freed blocks (canary.h).
 */
#include "canary.h"

#include <string.h>

#include "central.h"
#include "error.h"
#include "lock.h"
#include "options.h"
#include "span.h"
#include "tcache.h"

#define PAD_BYTE 0xa5

static uint64_t trailer(const void *p, size_t n) {
  return (pl_secret * 0x9e3779b97f4a7c15ull) ^ (uintptr_t)p ^ (uint64_t)n;
}

void pl_canary_set(void *p, size_t total, size_t n) {
  unsigned char *b = p;
  size_t end = total - PL_CANARY_TRAILER;
  memset(b + n, PAD_BYTE, end - n);
  uint64_t t = trailer(p, n);
  memcpy(b + end, &t, sizeof t);
}

size_t pl_canary_check(void *p, size_t total, const char *func) {
  unsigned char *b = p;
  size_t end = total - PL_CANARY_TRAILER;
  uint64_t t;
  memcpy(&t, b + end, sizeof t);
  uint64_t n = t ^ trailer(p, 0);
  if (n >= end) pl_fatal_ptr(func, "heap buffer overflow", p);
  for (size_t i = (size_t)n; i < end; i++)
    if (b[i] != PAD_BYTE) pl_fatal_ptr(func, "heap buffer overflow", p);
  return (size_t)n;
}

/* The tag binds the key to the carving of the span the block belongs to,
 * so bytes left over from an earlier life of the same memory never pass
 * for a junked block. */
static uintptr_t junk_tag(const void *p, unsigned cls) {
  const pl_span_t *s = pl_span_of(p);
  uint64_t gen = s ? s->generation : 0;
  return pl_free_key(p) ^ (((uintptr_t)cls << 48) + gen) * 0x9e3779b97f4a7c15ull;
}

void pl_junk_fill(void *p, size_t size, unsigned cls) {
  uintptr_t *w = p;
  w[1] = junk_tag(p, cls);
  if (size > 2 * sizeof(uintptr_t))
    memset((char *)p + 2 * sizeof(uintptr_t), PL_JUNK_BYTE, size - 2 * sizeof(uintptr_t));
}

void pl_junk_fresh(void *p, unsigned cls) {
  pl_junk_fill(p, pl_class_info[cls].size, cls);
  *(uintptr_t *)p = pl_free_key(p);
}

/* pl_junk_check, naming func in the report. */
static void junk_verify(void *p, size_t size, unsigned cls, const char *func) {
  const uintptr_t *w = p;
  if (w[0] != pl_free_key(p) || w[1] != junk_tag(p, cls))
    pl_fatal_ptr(func, "write after free", p);
  const unsigned char *b = p;
  for (size_t i = 2 * sizeof(uintptr_t); i < size; i++)
    if (b[i] != PL_JUNK_BYTE) pl_fatal_ptr(func, "write after free", p);
}

void pl_junk_check(void *p, size_t size, unsigned cls) { junk_verify(p, size, cls, "malloc"); }

/* ---- PALLET_CANARY's quarantine --------------------------------------- */

/* A ring of the held blocks, oldest at q_head, with their classes. */
static void *q_ring[PL_QUARANTINE_BLOCKS];
static uint8_t q_cls[PL_QUARANTINE_BLOCKS];
static size_t q_head, q_count, q_bytes;
static pl_lock_t q_lock = PL_LOCK_INIT;
_Static_assert(PL_NCLASSES <= UINT8_MAX, "a class fits in a byte");

/* The same blocks as a set, by address: open addressing with linear
 * probing, at most half full (NULL: an empty slot).  A block freed again
 * while it waits is found here even if a write after the first free wiped
 * its key, which the ring alone would have taken in twice, and handed to
 * the central lists twice: two allocations of one block. */
#define Q_SET_SLOTS (2 * PL_QUARANTINE_BLOCKS)
_Static_assert((Q_SET_SLOTS & (Q_SET_SLOTS - 1)) == 0, "a power of two");
static void *q_set[Q_SET_SLOTS];

static size_t q_slot(const void *p) {
  return (size_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 40) & (Q_SET_SLOTS - 1);
}

/* The slot that holds p, or else the empty slot that ends p's run. */
static size_t q_find(const void *p) {
  size_t i = q_slot(p);
  while (q_set[i] != NULL && q_set[i] != p) i = (i + 1) & (Q_SET_SLOTS - 1);
  return i;
}

/* Adds p; false if it is there already. */
static bool q_set_add(void *p) {
  size_t i = q_find(p);
  if (q_set[i] == p) return false;
  q_set[i] = p;
  return true;
}

/* Removes p (present): the entries after it in its run move back into
 * the hole when their home slot does not lie between the hole and them,
 * so that every entry stays reachable from its home slot. */
static void q_set_remove(const void *p) {
  size_t i = q_find(p);
  pl_dassert(q_set[i] == p);
  if (q_set[i] != p) return; /* (never: every block in the ring is in the set) */
  size_t hole = i;
  for (size_t j = (i + 1) & (Q_SET_SLOTS - 1); q_set[j] != NULL; j = (j + 1) & (Q_SET_SLOTS - 1)) {
    size_t home = q_slot(q_set[j]);
    /* home cyclically in (hole, j]: the entry stays. */
    if (((j - home) & (Q_SET_SLOTS - 1)) < ((j - hole) & (Q_SET_SLOTS - 1))) continue;
    q_set[hole] = q_set[j];
    hole = j;
  }
  q_set[hole] = NULL;
}

/* A block leaving the quarantine still holds its key (and under
 * PALLET_JUNK its tag and fill): anything else was written after free. */
static void q_verify(void *p, unsigned cls, const char *func) {
  if (pl_opt.junk)
    junk_verify(p, pl_class_info[cls].size, cls, func);
  else if (*(const uintptr_t *)p != pl_free_key(p))
    pl_fatal_ptr(func, "write after free", p);
}

/* Takes out up to max of the oldest blocks while the ring holds more than
 * keep_blocks blocks or keep_bytes bytes; returns how many. */
static size_t q_take(void **out, uint8_t *cls, size_t max, size_t keep_blocks, size_t keep_bytes) {
  size_t n = 0;
  while (n < max && q_count > 0 && (q_count > keep_blocks || q_bytes > keep_bytes)) {
    out[n] = q_ring[q_head];
    cls[n] = q_cls[q_head];
    q_set_remove(out[n]);
    q_bytes -= pl_class_info[cls[n]].size;
    q_head = (q_head + 1) % PL_QUARANTINE_BLOCKS;
    q_count--;
    n++;
  }
  return n;
}

/* Gives back, outside the lock, the blocks past keep_blocks / keep_bytes
 * (in batches; a central list's lock is taken per block), each verified
 * first. */
static void q_release(size_t keep_blocks, size_t keep_bytes, const char *func) {
  enum { BATCH = 32 };
  void *out[BATCH];
  uint8_t cls[BATCH];
  for (;;) {
    pl_lock(&q_lock);
    size_t n = q_take(out, cls, BATCH, keep_blocks, keep_bytes);
    pl_unlock(&q_lock);
    if (n == 0) return;
    for (size_t i = 0; i < n; i++) {
      q_verify(out[i], cls[i], func);
      pl_central_free_batch(cls[i], &out[i], 1);
    }
  }
}

void pl_quarantine_free(void *p, unsigned cls, const char *func) {
  pl_lock(&q_lock);
  if (!q_set_add(p)) {
    pl_unlock(&q_lock);
    pl_fatal_ptr(func, "double free", p);
  }
  /* Room for p: the ring never holds more than its slots. */
  void *old = NULL;
  uint8_t old_cls = 0;
  if (q_count == PL_QUARANTINE_BLOCKS) q_take(&old, &old_cls, 1, 0, 0);
  q_ring[(q_head + q_count) % PL_QUARANTINE_BLOCKS] = p;
  q_cls[(q_head + q_count) % PL_QUARANTINE_BLOCKS] = (uint8_t)cls;
  q_count++;
  q_bytes += pl_class_info[cls].size;
  bool over = q_bytes > PL_QUARANTINE_BYTES;
  pl_unlock(&q_lock);
  if (old != NULL) {
    q_verify(old, old_cls, func);
    pl_central_free_batch(old_cls, &old, 1);
  }
  if (over) q_release(PL_QUARANTINE_BLOCKS, PL_QUARANTINE_BYTES, func);
}

bool pl_quarantine_holds(const void *p) {
  pl_lock(&q_lock);
  bool held = q_set[q_find(p)] == p;
  pl_unlock(&q_lock);
  return held;
}

void pl_quarantine_flush(void) { q_release(0, 0, "malloc_trim"); }

void pl_quarantine_fork_prepare(void) { pl_lock(&q_lock); }
void pl_quarantine_fork_parent(void) { pl_unlock(&q_lock); }
void pl_quarantine_fork_child(void) { pl_lock_init(&q_lock); }
