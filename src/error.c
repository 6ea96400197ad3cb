/*
 * error.c — fatal reports and warnings, written with write(2) only.
 */
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pl_msg_str(pl_msg_t *m, const char *s) {
  while (*s && m->len < sizeof m->buf - 1) m->buf[m->len++] = *s++;
}

void pl_msg_hex(pl_msg_t *m, uintptr_t v) {
  char tmp[2 + 16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  pl_msg_str(m, "0x");
  while (n > 0 && m->len < sizeof m->buf - 1) m->buf[m->len++] = tmp[--n];
}

void pl_msg_dec(pl_msg_t *m, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n > 0 && m->len < sizeof m->buf - 1) m->buf[m->len++] = tmp[--n];
}

void pl_msg_write(const pl_msg_t *m) {
  int saved = errno;
  size_t off = 0;
  while (off < m->len) {
    ssize_t w = write(STDERR_FILENO, m->buf + off, m->len - off);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;
    }
    off += (size_t)w;
  }
  errno = saved;
}

void pl_msg_fatal(const pl_msg_t *m) {
  pl_msg_write(m);
  abort();
}

void pl_fatal_ptr(const char *func, const char *what, const void *addr) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: ");
  pl_msg_str(&m, func);
  pl_msg_str(&m, "(): ");
  pl_msg_str(&m, what);
  pl_msg_str(&m, " ");
  pl_msg_hex(&m, (uintptr_t)addr);
  pl_msg_str(&m, "\n");
  pl_msg_fatal(&m);
}

void pl_assert_fail(const char *expr, const char *file, int line) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: internal assertion failed: ");
  pl_msg_str(&m, expr);
  pl_msg_str(&m, " at ");
  pl_msg_str(&m, file);
  pl_msg_str(&m, ":");
  pl_msg_dec(&m, (uint64_t)line);
  pl_msg_str(&m, "\n");
  pl_msg_fatal(&m);
}
