/*
 * error.h — fatal reports.  Messages go to stderr with write(2): no stdio,
 * no malloc, safe from any state of the heap.  Then abort().
 */
#ifndef PL_ERROR_H
#define PL_ERROR_H

#include "common.h"

/* "pallet: <func>(): <what> 0x<addr>\n" then abort(). */
void pl_fatal_ptr(const char *func, const char *what, const void *addr)
    PL_HIDDEN PL_NORETURN PL_COLD;
/* Append-only buffer writer used for messages built without stdio. */
typedef struct pl_msg {
  char buf[512];
  size_t len;
} pl_msg_t;
void pl_msg_str(pl_msg_t *m, const char *s) PL_HIDDEN;
void pl_msg_hex(pl_msg_t *m, uintptr_t v) PL_HIDDEN;
void pl_msg_dec(pl_msg_t *m, uint64_t v) PL_HIDDEN;
void pl_msg_write(const pl_msg_t *m) PL_HIDDEN;
/* Writes m, then abort(). */
void pl_msg_fatal(const pl_msg_t *m) PL_HIDDEN PL_NORETURN PL_COLD;

#endif /* PL_ERROR_H */
