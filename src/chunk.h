/*
 * chunk.h — chunks, the page map, and the record of which memory is ours.
 *
 * The address space is cut into 4 MiB slots.  Every slot pallet owns points,
 * through a two-level radix map, at the record of what occupies it:
 *   - a heap chunk (one slot, aligned to 4 MiB), carved into spans by the
 *     span heap; its record holds the page map: for each of its 512 pages,
 *     the span that covers it (page_span), and for each 4 KiB a word for
 *     the free fast path (page_info: the size class and where its span
 *     starts);
 *   - a huge block (one or more slots, starting at a slot boundary);
 *   - the tombstone of a huge block already freed, or of a heap chunk of
 *     the arena given back to the OS (its slot stays pallet's reserved
 *     address space until a chunk is mapped there again), so that a
 *     second free of a block that was there is reported as a double free,
 *     not as a foreign pointer.
 * A slot whose entry is NULL (or whose leaf is missing) is not ours;
 * lookups report it as &pl_chunk_none.  (Leaves are left zeroed, so only
 * the pages of a leaf that cover pallet's slots become resident.)
 * Records are metadata (meta.c), never next to user memory.
 *
 * The heap arena: heap chunks are carved, where possible, from one range
 * of address space reserved at start-up (PROT_NONE until a chunk is
 * mapped there), and the page map of that range (a page word for every
 * 4 KiB and a span pointer for every page) sits in two flat arrays.  So
 * free() finds a block's page word with a subtraction, a compare and one
 * load, without
 * the radix map; a pointer outside the arena (huge blocks, chunks mapped
 * after the arena filled up or when it could not be reserved, foreign
 * pointers) takes the slow path, which uses the radix map for everything.
 * When a chunk is unmapped, the pages of its slot's page map go back to
 * the OS too.
 *
 * Concurrency: entries are published with release stores before any
 * pointer into the slot is handed out, and read with relaxed loads (a
 * program passes a pointer between threads with its own synchronisation).
 * page_info/page_span of a heap chunk are written under the span heap lock
 * and read by free() without it: a block's entries cannot change while the
 * block is live.
 */
#ifndef PL_CHUNK_H
#define PL_CHUNK_H

#include "common.h"

struct pl_span;

typedef enum {
  PL_CHUNK_HEAP = 1,
  PL_CHUNK_HUGE = 2,
  PL_CHUNK_FREED = 3, /* tombstone: a freed huge block, a given-back arena chunk */
} pl_chunk_kind_t;

/* A page word, free()'s view of 4 KiB of a page: for a small-block span
 * of class cls that starts at address start,
 *   span_neg = -start mod 2^32, so that p + span_neg (mod 2^32) is p's
 *              offset in its span (spans are < 4 MiB): one lea;
 *   bin      = cls * 32, the byte offset of the class's bin in a thread
 *              cache (tcache.h checks that a bin is 32 bytes);
 * (on its warm words, span.h), a ghost word on the pages of a small-block
 * span freed to the heap (see pl_pw_ghost), and {0, 0} everywhere else.
 * With the checks on, free() reads the word in one 8-byte load (the
 * offset is one lea of it, the bin one shift); with them compiled out it
 * loads only bin. */
typedef struct __attribute__((aligned(8))) pl_pageword {
  uint32_t span_neg;
  uint32_t bin;
} pl_pageword_t;
/* The 8-byte view: span_neg is its low half, bin its high half
 * (x86-64 is little-endian). */
typedef uint64_t __attribute__((may_alias)) pl_pageword_bits_t;
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "page words: span_neg is the low half");
#define PL_PW_BIN_SHIFT 5

PL_INLINE pl_pageword_t pl_pw_make(unsigned cls, uintptr_t start) {
  return (pl_pageword_t){0u - (uint32_t)start, (uint32_t)cls << PL_PW_BIN_SHIFT};
}
/* The pages of a small-block span that went back to the heap keep a
 * ghost word until they are carved again: bin 0 (so the fast paths leave
 * at once, as on any free page) and span_neg = cls << 16 | the span's
 * first page in its chunk, so that a later free of one of its blocks is
 * still told apart from a stray pointer ("double free", not "invalid
 * pointer").  {0, 0} is no ghost: class 0 is not a class. */
PL_INLINE pl_pageword_t pl_pw_ghost(unsigned cls, size_t first_page) {
  return (pl_pageword_t){(uint32_t)cls << 16 | (uint32_t)first_page, 0};
}
PL_INLINE unsigned pl_pw_ghost_class(pl_pageword_t w) { return w.bin ? 0 : w.span_neg >> 16; }
PL_INLINE size_t pl_pw_ghost_first_page(pl_pageword_t w) { return w.span_neg & 0xffffu; }
PL_INLINE pl_pageword_t pl_pw_load(const pl_pageword_t *w) {
  return (pl_pageword_t){__atomic_load_n(&w->span_neg, __ATOMIC_RELAXED),
                         __atomic_load_n(&w->bin, __ATOMIC_RELAXED)};
}
PL_INLINE bool pl_pw_equal(pl_pageword_t a, pl_pageword_t b) {
  return a.span_neg == b.span_neg && a.bin == b.bin;
}
PL_INLINE unsigned pl_pw_class(pl_pageword_t w) { return w.bin >> PL_PW_BIN_SHIFT; }
/* Offset of p from the start of the span of page word w. */
PL_INLINE uint32_t pl_pw_span_offset(pl_pageword_t w, const void *p) {
  return (uint32_t)(uintptr_t)p + w.span_neg;
}

/* A chunk record.  A heap chunk's page map (page words, one each 4 KiB,
 * and span pointers, one each page) lives in the arena's flat arrays,
 * or, for a chunk outside the arena, in arrays of its own that the record
 * keeps across reuse; either way the record itself is small. */
typedef struct pl_chunk {
  pl_pageword_t *page_info;       /* heap chunk: its 1024 page words */
  struct pl_span **page_span;     /* heap chunk: its 512 span pointers */
  uintptr_t base;                 /* first byte of the chunk / block */
  size_t size;                    /* bytes mapped */
  size_t usable;                  /* huge: usable bytes of the block */
  uint8_t kind;                   /* pl_chunk_kind_t */
  uint8_t heap;                   /* heap chunk: which span heap owns it (span.c) */
  struct pl_chunk *next, *prev;   /* list of heap chunks / huge blocks */
  pl_pageword_t *own_info;        /* arrays for a chunk outside the arena */
  struct pl_span **own_span;      /* (allocated when first needed) */
} pl_chunk_t;

/* The arena: [pl_arena_base, pl_arena_base + pl_arena_size), 4 MiB
 * aligned (size 0 until reserved, or if it could not be); pl_arena_info
 * has the page word of every 4 KiB of it (a slot's 1024 words are two
 * 4 KiB pages), pl_arena_spans the span of every page (a slot's 512
 * entries, one 4 KiB page). */
extern uintptr_t pl_arena_base PL_HIDDEN;
extern size_t pl_arena_size PL_HIDDEN;
extern struct pl_span **pl_arena_spans PL_HIDDEN;
extern pl_pageword_t *pl_arena_info PL_HIDDEN;

/* Maps a zeroed, 4 MiB aligned heap chunk (from the arena while it has
 * room) and points rec->page_info at the chunk's page words.  NULL when
 * out of memory.  Call with no lock held. */
void *pl_chunk_heap_map(pl_chunk_t *rec) PL_HIDDEN;
/* Gives a heap chunk's memory back to the OS (its slot of the arena back
 * to the arena), after clearing its page words. */
void pl_chunk_heap_unmap(pl_chunk_t *rec) PL_HIDDEN;

/* The leaves of the radix map: 2^13 slots of 4 MiB = 32 GiB per leaf,
 * 2^13 leaves cover the 2^48-byte user address space. */
#define PL_MAP_L2_BITS 13
#define PL_MAP_L1_BITS 13
#define PL_MAP_L2_SIZE ((size_t)1 << PL_MAP_L2_BITS)
#define PL_MAP_L1_SIZE ((size_t)1 << PL_MAP_L1_BITS)

extern pl_chunk_t **pl_chunk_map[PL_MAP_L1_SIZE] PL_HIDDEN;

/* What a slot pallet does not own points at: a record of no kind whose
 * page map is all zero (class 0), so that free's fast path needs no test
 * for "not ours" before it reads the page map. */
extern pl_chunk_t pl_chunk_none PL_HIDDEN;

/* The record of the slot holding p; &pl_chunk_none if pallet does not own
 * it. */
PL_INLINE pl_chunk_t *pl_chunk_lookup_raw(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t i1 = a >> (PL_CHUNK_SHIFT + PL_MAP_L2_BITS);
  if (PL_UNLIKELY(i1 >= PL_MAP_L1_SIZE)) return &pl_chunk_none;
  pl_chunk_t **leaf = __atomic_load_n(&pl_chunk_map[i1], __ATOMIC_RELAXED);
  if (PL_UNLIKELY(leaf == NULL)) return &pl_chunk_none;
  pl_chunk_t *rec = __atomic_load_n(&leaf[(a >> PL_CHUNK_SHIFT) & (PL_MAP_L2_SIZE - 1)],
                                    __ATOMIC_RELAXED);
  return rec ? rec : &pl_chunk_none;
}

/* The record of the slot holding p, or NULL if pallet does not own it. */
PL_INLINE pl_chunk_t *pl_chunk_lookup(const void *p) {
  pl_chunk_t *c = pl_chunk_lookup_raw(p);
  return c == &pl_chunk_none ? NULL : c;
}

PL_INLINE size_t pl_chunk_page_index(const void *p) {
  return ((uintptr_t)p & (PL_CHUNK_SIZE - 1)) >> PL_PAGE_SHIFT;
}
/* The index of p's page word in its chunk's page_info. */
PL_INLINE size_t pl_chunk_word_index(const void *p) {
  return ((uintptr_t)p & (PL_CHUNK_SIZE - 1)) >> PL_PW_SHIFT;
}

/* Makes sure the map has leaves for [base, base+size).  May map memory:
 * call with no lock held.  Returns false when out of memory. */
bool pl_chunk_map_reserve(uintptr_t base, size_t size) PL_HIDDEN;
/* Points every slot of [base, base+size) at rec (NULL: forget them).
 * The leaves must have been reserved. */
void pl_chunk_map_set(uintptr_t base, size_t size, pl_chunk_t *rec) PL_HIDDEN;

/* A new record, zeroed (from metadata; recycled records first).  May map
 * memory: call with no lock held. */
pl_chunk_t *pl_chunk_record_new(void) PL_HIDDEN;
/* Gives a record back for reuse. */
void pl_chunk_record_release(pl_chunk_t *rec) PL_HIDDEN;

void pl_chunk_fork_prepare(void) PL_HIDDEN;
void pl_chunk_fork_parent(void) PL_HIDDEN;
void pl_chunk_fork_child(void) PL_HIDDEN;

/* The shared tombstone that slots of freed huge blocks and of given-back
 * arena chunks point at. */
extern pl_chunk_t pl_chunk_tombstone PL_HIDDEN;

#endif /* PL_CHUNK_H */
