/*
 * canary.h — optional block checks (PALLET_CANARY, PALLET_JUNK).
 *
 * Canary: a block of n requested bytes is allocated with room for 9 more.
 * The bytes from n to the end of the block, but for its last word, are
 * filled with a pad pattern (at least one byte of it), and the last word
 * holds n encoded with the secret and the block's address.  free, realloc
 * and malloc_usable_size decode n and verify the pad: a write past the
 * requested size (even of a single byte) is reported as
 * "pallet: <func>(): heap buffer overflow 0x..." and aborts.
 * malloc_usable_size then answers n.  The byte right after the request is
 * always pad (0xa5), never the trailer: a one-byte overflow is caught
 * whatever it writes but 0xa5 (a NUL terminator, the commonest, always).
 * With only 8 more bytes, a request that filled its class up to the
 * trailer had a trailer byte there, random with the secret, and an
 * overflow writing that very value (1 in 256) went unnoticed.
 *
 * Junk: small blocks are filled with 0x5a when freed, and when their span
 * is carved, but for the first word (the free key) and the second (a tag
 * of the key, the class and the carving of its span, so that bytes left
 * from an earlier carving of the same memory never pass).  Every block
 * handed out is verified, those two words included, so a write after
 * free anywhere in the block is reported as
 * "pallet: malloc(): write after free 0x...".  (Until the carving filled
 * too, a block whose two words did not match was taken for one never
 * handed out, and a write into them went unreported.)  The pages of
 * partly used spans are never given back to the OS in this mode (central.c),
 * so no fill is lost to a purge.
 *
 * Both options route every allocation and free through the slow paths
 * (no thread cache), so they cost nothing when off.
 */
#ifndef PL_CANARY_H
#define PL_CANARY_H

#include "common.h"

/* Bytes a block gets beyond its request: the trailer, and at least one
 * pad byte before it. */
#define PL_CANARY_TRAILER 8
#define PL_CANARY_EXTRA (PL_CANARY_TRAILER + 1)
#define PL_JUNK_BYTE 0x5a

/* Writes pad and trailer for n requested bytes in a block of total usable
 * bytes (n + PL_CANARY_EXTRA <= total). */
void pl_canary_set(void *p, size_t total, size_t n) PL_HIDDEN;
/* Verifies them; returns n, or reports the overflow and aborts. */
size_t pl_canary_check(void *p, size_t total, const char *func) PL_HIDDEN;
/* Tags a freed block of class cls (size bytes) and fills the rest with
 * the junk byte; the caller writes the free key in the first word. */
void pl_junk_fill(void *p, size_t size, unsigned cls) PL_HIDDEN;
/* pl_central_carve_hook under PALLET_JUNK: a block of a span just carved
 * gets what a free would write (fill, tag, key). */
void pl_junk_fresh(void *p, unsigned cls) PL_HIDDEN;
/* For a block about to be handed out: checks the key, the tag and the
 * fill; reports a write after free and aborts. */
void pl_junk_check(void *p, size_t size, unsigned cls) PL_HIDDEN;

/* PALLET_CANARY's quarantine: a small block freed in that mode waits,
 * first in first out, until PL_QUARANTINE_BLOCKS blocks or
 * PL_QUARANTINE_BYTES bytes are held after it, before it goes back to
 * the central lists.  It holds its free key all that time, so a second
 * free, a realloc or a malloc_usable_size of it says "double free" even
 * if the program has made allocations of the same size in between:
 * without the wait, the block would have been handed out again at once,
 * and the second free would have freed that allocation.  The quarantine
 * also knows its blocks by address, so a second free says "double free"
 * even after a write into the block wiped its key; and a block leaving
 * it must still hold its key (under PALLET_JUNK, its tag and fill too),
 * or the free or malloc_trim that let it go reports "write after free"
 * with its address.  Blocks in the quarantine count as allocated in the
 * statistics. */
#define PL_QUARANTINE_BLOCKS 4096
#define PL_QUARANTINE_BYTES ((size_t)4 << 20)
/* Takes freed block p of class cls (its key written), or reports a
 * double free (func names the entry point) if it holds p already; gives
 * the oldest blocks past the bounds back to the central lists. */
void pl_quarantine_free(void *p, unsigned cls, const char *func) PL_HIDDEN;
/* Whether p waits in the quarantine (freed, whatever its first word
 * holds now). */
bool pl_quarantine_holds(const void *p) PL_HIDDEN;
/* Gives every held block back (malloc_trim). */
void pl_quarantine_flush(void) PL_HIDDEN;
void pl_quarantine_fork_prepare(void) PL_HIDDEN;
void pl_quarantine_fork_parent(void) PL_HIDDEN;
void pl_quarantine_fork_child(void) PL_HIDDEN;

#endif /* PL_CANARY_H */
