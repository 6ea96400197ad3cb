/*
 * common.h — the ground floor: compiler attributes, assertions and the
 * constants every layer shares.  Includes nothing of pallet's.
 *
 * Geometry (all powers of two):
 *   page   = 8 KiB   the unit of spans and of the page map
 *   chunk  = 4 MiB   what the heap maps from the OS, aligned to its size,
 *                    so chunk_of(p) = p & ~(PL_CHUNK_SIZE - 1)
 *   pages per chunk = 512
 * Blocks up to PL_SMALL_MAX come from size classes; up to PL_LARGE_MAX
 * from whole spans; above that each block is its own mapping ("huge").
 */
#ifndef PL_COMMON_H
#define PL_COMMON_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL_LIKELY(x) __builtin_expect(!!(x), 1)
#define PL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PL_INLINE static inline __attribute__((always_inline))
#define PL_NOINLINE __attribute__((noinline))
#define PL_COLD __attribute__((cold, noinline))
#define PL_NORETURN __attribute__((noreturn))
#define PL_HIDDEN __attribute__((visibility("hidden")))
#define PL_EXPORT __attribute__((visibility("default")))
#define PL_CACHELINE 64
#define PL_ALIGNED(n) __attribute__((aligned(n)))
/* pallet's thread-local data (tcache.h's pl_tls, span.c's home heap). */
#if PL_TLS_INITIAL_EXEC
#define PL_TLS_MODEL "initial-exec"
#else
#define PL_TLS_MODEL "global-dynamic" /* --disable-initial-exec-tls */
#endif

/* Built with a sanitizer (which must see every memory access). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define PL_SANITIZED 1
#endif
#endif

#define PL_PAGE_SHIFT 13
#define PL_PAGE_SIZE ((size_t)1 << PL_PAGE_SHIFT)
#define PL_CHUNK_SHIFT 22
#define PL_CHUNK_SIZE ((size_t)1 << PL_CHUNK_SHIFT)
#define PL_CHUNK_PAGES (PL_CHUNK_SIZE >> PL_PAGE_SHIFT)
/* Page words (chunk.h) cover 4 KiB, half a page, the OS page size: a
 * span's page words then tell free() where blocks have been made ready
 * (cold and warm words, span.h) without making whole 8 KiB pages
 * resident.  Everything else (spans, page_span) counts whole pages. */
#define PL_PW_SHIFT 12
#define PL_PW_PER_PAGE (PL_PAGE_SIZE >> PL_PW_SHIFT)
#define PL_CHUNK_WORDS (PL_CHUNK_SIZE >> PL_PW_SHIFT)

#define PL_MIN_ALIGN 16
#define PL_SMALL_MAX ((size_t)256 << 10)  /* largest size class */
#define PL_LARGE_MAX PL_CHUNK_SIZE        /* largest span-backed block */
#define PL_MAX_REQUEST ((size_t)PTRDIFF_MAX)

/* Compile-time configuration as constants, so that every variant compiles
 * and hot functions carry no #if. */
static const bool pl_config_debug = PL_DEBUG;
static const bool pl_config_hardening = PL_HARDENING;

/* The per-process secret (lifecycle.c sets it at start-up), and the free
 * key: what a free small block holds in its first word, wherever it is
 * (a thread cache, a transfer array, its span), unless its page is cold
 * (span.h).  A block whose first word holds it is free: a free of it is a
 * double free. */
extern uint64_t pl_secret PL_HIDDEN;
PL_INLINE uintptr_t pl_free_key(const void *p) { return pl_secret ^ (uintptr_t)p; }

/* The mask of the n lowest bits of a 64-bit word (n may be 64 or more). */
PL_INLINE uint64_t pl_low_bits64(size_t n) { return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1; }

#define PL_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uintptr_t)(a)-1))
#define PL_ALIGN_DOWN(x, a) ((x) & ~((uintptr_t)(a)-1))

/* Assertions: pl_assert is always on (cheap, guards memory safety);
 * pl_dassert only in --enable-debug builds. */
void pl_assert_fail(const char *expr, const char *file, int line)
    PL_HIDDEN PL_NORETURN PL_COLD;
#define pl_assert(e) \
  (PL_LIKELY(e) ? (void)0 : pl_assert_fail(#e, __FILE__, __LINE__))
#define pl_dassert(e) \
  ((!pl_config_debug || PL_LIKELY(e)) ? (void)0 \
                                      : pl_assert_fail(#e, __FILE__, __LINE__))

#endif /* PL_COMMON_H */
