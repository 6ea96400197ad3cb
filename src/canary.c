/*
 * canary.c — canaries after blocks and junk in freed blocks (canary.h).
 */
#include "canary.h"

#include <string.h>

#include "error.h"
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

void pl_junk_check(void *p, size_t size, unsigned cls) {
  const uintptr_t *w = p;
  if (w[0] != pl_free_key(p) || w[1] != junk_tag(p, cls))
    pl_fatal_ptr("malloc", "write after free", p);
  const unsigned char *b = p;
  for (size_t i = 2 * sizeof(uintptr_t); i < size; i++)
    if (b[i] != PL_JUNK_BYTE) pl_fatal_ptr("malloc", "write after free", p);
}
