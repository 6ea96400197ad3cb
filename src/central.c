/*
 * central.c — per-class central lists of partially free spans.
 */
#include "central.h"

#include <string.h>

#include "error.h"
#include "lock.h"
#include "options.h"
#include "os.h"

/* Free blocks a class keeps as a plain array of pointers in front of its
 * spans, so that a batch freed by one thread and wanted by another moves
 * with two memcpy under the lock instead of a bitmap update per block.
 * At most XFER_MAX blocks and XFER_BYTES bytes a class; XFER_BIG blocks
 * for classes above 32 KiB, whose spans hold one or two blocks.  With
 * only 2 there, most of those spans went back to the heap at each free
 * and were carved again at the next malloc: bench-bands large spent half
 * its instructions doing that, and the churn left 12 MiB resident for
 * 4 MiB of live blocks; with 8, 0.44x the time and 0.28x the peak RSS
 * (bench-buffers 0.82x, bench-servermix 0.87x the RSS; bench-realloc
 * 1.25x).  Every decay pass drains the arrays into the spans, so what
 * they hold goes back to the heap within a quarter of the decay time.
 * XFER_BYTES was 64 KiB: a class of 4 KiB then kept 16 blocks, and in a
 * server mix most frees of blocks of 1-32 KiB went back to their spans'
 * bitmaps and were found there again by the next refill.  With 512 KiB
 * (7 interleaved runs): bench-servermix 0.88x the time with 2 threads,
 * 0.96x with 4, 0.98x with 8, and 0.91-0.96x the peak RSS;
 * bench-bands medium 0.92x the peak RSS, 50.9 instructions a pair
 * instead of 53.2; the other benchmarks within noise. */
uint64_t pl_secret;

#define XFER_MAX 512
#define XFER_BYTES ((size_t)512 << 10)
#define XFER_SIZE_MAX PL_BIG_CLASS_MIN
#define XFER_BIG 8

/* Shards: each class's partial spans and transfer array are split by
 * the threads' home heaps (span.h): a thread's shard is that of its home
 * heap, a span's that of the thread that carved it (or took it back
 * from the kept spans).  A refill takes from its own shard first, and
 * a flush gives to the shard of the span its first block came from, or
 * for blocks of 256 B to 32 KiB to its own shard (batch_shard); so two
 * threads of different home heaps that each allocate and free their own
 * blocks of the same classes (per-thread working sets) keep their
 * blocks on spans of their own (or, past 256 B, to themselves),
 * where one shared list mixed them block by block: blocks one thread
 * flushed went to the other's next refill, next to the first one's live
 * blocks, and the cache lines they shared moved between the cores
 * (bench-sharing: 4-9 cross-thread touches of a line per 1000
 * operations, 0.01-0.3 with shards; mimalloc and jemalloc, whose
 * threads carve their own pages, none).  What a shard lacks it takes
 * from the others' transfer arrays before it carves a span, and from
 * their partial spans only when the heap has no memory for a new span:
 * taking those before carving mixed the blocks again.  The price is
 * more spans where blocks flow between threads (bench-pipeline 1.5x).
 * Heaps beyond CENTRAL_SHARDS share shards (heap % CENTRAL_SHARDS). */
#define CENTRAL_SHARDS 8

typedef struct pl_central {
  pl_lock_t lock;
  pl_span_t *kept;     /* wholly free spans kept (PL_SPAN_KEPT), linked by next */
  size_t nspans;       /* spans of this class: listed, kept or full */
  size_t nfree_blocks; /* free blocks in the listed and kept spans' bitmaps */
  /* Per shard: the spans with at least one free block, the free blocks
   * in its transfer array (not in the bitmaps), and whether a refill
   * took from that array since it last overflowed. */
  pl_span_t *partial[CENTRAL_SHARDS];
  uint16_t nxfer[CENTRAL_SHARDS];
  bool taken[CENTRAL_SHARDS];
} PL_ALIGNED(PL_CACHELINE) pl_central_t;

/* One cache line per class for the lock and the lists; the transfer
 * arrays apart, so that a pass over every class (decay, statistics, fork)
 * touches 97 lines, not a page per class. */
static pl_central_t central[PL_NCLASSES + 1];

/* The shard of span s and the calling thread's. */
PL_INLINE unsigned shard_of(const pl_span_t *s) { return __atomic_load_n(&s->shard, __ATOMIC_RELAXED); }
PL_INLINE unsigned my_shard(void) { return pl_span_home() % CENTRAL_SHARDS; }
PL_INLINE void set_shard(pl_span_t *s, unsigned sh) {
  __atomic_store_n(&s->shard, (uint8_t)sh, __ATOMIC_RELAXED);
}

/* Blocks of SHARD_OWN_MIN bytes up to PL_BIG_CLASS_MIN (excluded) go
 * back to the flusher's shard.  Such a block spans four cache lines or
 * more and shares at most its first and last with its neighbours (none
 * from 512 B, whose class sizes are multiples of 64), so what moves
 * between the cores is mostly the block itself, when the thread that
 * flushed it is not the one that allocates it next.  Sent back to its
 * span's shard, a block that a thread took from another shard (its own
 * empty) went back there at the thread's next flush, leaving its own
 * shard short again: the two
 * threads kept trading blocks (bench-sharing 1024:4096, two threads
 * each replacing their own blocks: 95 cross-thread touches of a line
 * per 1,000 operations, 0.8 with this bound; 256:1024 7.8 and 0.12).
 * Flows still pool: a consumer's flushes fill its own array, where its
 * producer's refill, its own shard empty, takes them.  Smaller blocks
 * share lines with their neighbours and must go back to the threads of
 * their span; the classes of 32 KiB and more keep the span's shard too,
 * bench-buffers (32 KiB-1 MiB) having taken 1.03x the time and 1.02x
 * the peak RSS with them in the bound (doc/benchmarks.md). */
#define SHARD_OWN_MIN 256

/* The shard a batch of blocks of class cls goes to: the caller's for
 * the classes of SHARD_OWN_MIN bytes up to PL_BIG_CLASS_MIN (excluded);
 * for the others, that of the span of its first block (a batch mostly comes from
 * one thread's spans: a consumer's flush holds what its producer made),
 * so that the blocks go back to the transfer array of the threads that
 * carved them, or the caller's if that block is not one of this class's
 * (a misuse, which the bitmaps catch when the batch reaches them). */
static unsigned batch_shard(unsigned cls, const void *first) {
  size_t size = pl_class_info[cls].size;
  if (size >= SHARD_OWN_MIN && size < PL_BIG_CLASS_MIN) return my_shard();
  const pl_span_t *s = pl_span_of(first);
  if (PL_UNLIKELY(s == NULL || __atomic_load_n(&s->state, __ATOMIC_RELAXED) != PL_SPAN_SMALL ||
                  __atomic_load_n(&s->cls, __ATOMIC_RELAXED) != cls))
    return my_shard();
  return shard_of(s);
}

/* The blocks in all shards of c's transfer array (under its lock). */
static size_t xfer_count(const pl_central_t *c) {
  size_t n = 0;
  for (unsigned sh = 0; sh < CENTRAL_SHARDS; sh++) n += c->nxfer[sh];
  return n;
}

void (*pl_central_carve_hook)(void *block, unsigned cls);

/* The transfer arrays, interleaved by rows of XFER_ROW entries: entry i
 * of class cls is xfer_rows[i / XFER_ROW][cls][i % XFER_ROW].  An array
 * fills from entry 0, so a process whose classes each hold a few dozen
 * blocks there touches the first row only, a few pages for all its
 * classes, where a page per class (4 KiB, XFER_MAX entries) made 18 pages
 * resident in bench-scaling --threads 1 and more than 25 in
 * bench-workingset.  A row segment is 512 bytes, cache-line aligned, so
 * classes never share a line.  Each shard has its rows (3 MiB of bss
 * in all, resident only where used: a shard no thread has stays
 * untouched). */
#define XFER_ROW 64
static void *xfer_rows[CENTRAL_SHARDS][XFER_MAX / XFER_ROW][PL_NCLASSES + 1][XFER_ROW] PL_ALIGNED(
    PL_CACHELINE);
_Static_assert(XFER_MAX % XFER_ROW == 0, "whole rows");

/* Entries at .. at + n of class cls's array: written from src / read into dst. */
static void xfer_put(unsigned sh, unsigned cls, size_t at, void *const *src, size_t n) {
  while (n) {
    size_t o = at % XFER_ROW, k = XFER_ROW - o < n ? XFER_ROW - o : n;
    memcpy(&xfer_rows[sh][at / XFER_ROW][cls][o], src, k * sizeof(void *));
    at += k;
    src += k;
    n -= k;
  }
}

static void xfer_get(unsigned sh, unsigned cls, size_t at, void **dst, size_t n) {
  while (n) {
    size_t o = at % XFER_ROW, k = XFER_ROW - o < n ? XFER_ROW - o : n;
    memcpy(dst, &xfer_rows[sh][at / XFER_ROW][cls][o], k * sizeof(void *));
    at += k;
    dst += k;
    n -= k;
  }
}

#define SPARE_MAX_BYTES ((size_t)64 << 10)

/* Kept spans.  Past the spare, a span whose blocks are all free stays
 * with its class, off the partial list, while the kept spans of all
 * classes and the heap's dirty memory together stay within the dirty
 * bound (span.h: the free memory pallet keeps unpurged whatever its
 * age; counting only the kept spans against it, a thread that freed a
 * burst of 16 B - 32 KiB blocks left 53-83 MiB resident, against 25-64
 * MiB before kept spans and 33 MiB, with one run of eight at 83, this
 * way: bench-footprint burst-self); the class's next refill that
 * finds no partial span takes it back as it is: its page words set, its
 * free blocks keyed, its pages resident.  Given back to the heap instead,
 * it came back carved afresh (page map, cold words, keys), through the
 * heap's lock, buckets and coalescing: a thread allocating and freeing
 * rounds of 1,000 blocks of 1-64 KiB (classes whose spans hold 1 to 8
 * blocks) spent most of its time there.  Every decay pass gives the kept
 * spans back (pl_central_release_spares), as it drains the transfer
 * arrays, each free since it was kept: so the same pass purges those
 * kept for the decay time (after a burst of frees, the kept spans are
 * memory a quiet program no longer needs, where a span given back at
 * once would have been purged at once, past the dirty bound).
 * kept_bytes: their bytes, over all classes (changed under the class
 * lock of the span, read without). */
static size_t kept_bytes;
/* Whether spans may be kept: not after the heap's at-once purge (the
 * working set shrank: pl_central_release_kept) until a class carves a
 * span again (new_span).  Keeping on through a shrink, the last spans
 * emptied stayed resident: bench-frag kept 69 MiB once everything was
 * freed, against 45 MiB without kept spans. */
static bool keep_ok = true;

/* Keeps s, wholly free and off the partial list, if it holds more than
 * one block and the kept spans of all classes stay, with it, within the
 * room the heap's dirty memory leaves under the dirty bound.  A span of
 * one block (classes above 32 KiB) is the block itself: the heap can do
 * more with its pages, coalesced with their neighbours, than the class
 * can (a vector growing by realloc frees one and at once wants a span of
 * the next class, which may be those very pages); keeping them too made
 * bench-realloc's peak RSS 7 % higher. */
static bool keep_empty(pl_central_t *c, pl_span_t *s) {
  size_t bytes = (size_t)s->npages << PL_PAGE_SHIFT;
  if (s->nblocks < 2 || !__atomic_load_n(&keep_ok, __ATOMIC_RELAXED)) return false;
  if (__atomic_add_fetch(&kept_bytes, bytes, __ATOMIC_RELAXED) > pl_span_dirty_room()) {
    __atomic_sub_fetch(&kept_bytes, bytes, __ATOMIC_RELAXED);
    return false;
  }
  s->flags = PL_SPAN_KEPT;
  s->free_since = pl_os_now_ms();
  s->next = c->kept;
  s->prev = NULL;
  c->kept = s;
  return true;
}

/* Takes c's most recently kept span off its kept list. */
static pl_span_t *unkeep(pl_central_t *c) {
  pl_span_t *s = c->kept;
  c->kept = s->next;
  s->next = NULL;
  s->flags = 0;
  __atomic_sub_fetch(&kept_bytes, (size_t)s->npages << PL_PAGE_SHIFT, __ATOMIC_RELAXED);
  return s;
}

static void list_push(pl_central_t *c, pl_span_t *s) {
  pl_span_t **head = &c->partial[shard_of(s)];
  s->prev = NULL;
  s->next = *head;
  if (s->next) s->next->prev = s;
  *head = s;
  s->listed = 1;
}

static void list_remove(pl_central_t *c, pl_span_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    c->partial[shard_of(s)] = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  s->listed = 0;
}

/* The page words of the pages in mask (bit p: page p). */
static uint64_t words_of_pages(uint32_t mask) {
  uint64_t w = 0;
  for (; mask != 0; mask &= mask - 1)
    w |= pl_low_bits64(PL_PW_PER_PAGE) << (__builtin_ctz(mask) * PL_PW_PER_PAGE);
  return w;
}

/* A new span of class cls with every block free, in shard sh. */
static pl_span_t *new_span(unsigned cls, unsigned sh) {
  const pl_class_info_t *ci = &pl_class_info[cls];
  bool zeroed;
  pl_span_t *s = pl_span_alloc(ci->pages, 1, PL_SPAN_SMALL, cls, &zeroed, NULL);
  if (s == NULL) return NULL;
  if (!__atomic_load_n(&keep_ok, __ATOMIC_RELAXED)) __atomic_store_n(&keep_ok, true, __ATOMIC_RELAXED);
  static uint64_t carvings;
  s->generation = __atomic_add_fetch(&carvings, 1, __ATOMIC_RELAXED);
  s->nblocks = ci->nblocks;
  s->nfree = ci->nblocks;
  s->taken_end = 0;
  set_shard(s, sh);
  s->purged_pages = 0;
  for (size_t w = 0; w < PL_SPAN_BITMAP_WORDS; w++)
    s->free_map[w] = ci->nblocks > w * 64 ? pl_low_bits64(ci->nblocks - w * 64) : 0;
  if (PL_UNLIKELY(pl_central_carve_hook != NULL))
    for (size_t i = 0; i < ci->nblocks; i++)
      pl_central_carve_hook((void *)(s->start + i * ci->size), cls);
  return s;
}

/* A wholly free span stays listed (as its shard's spare, against
 * thrashing) only when it is the shard's only listed span and small. */
static bool keep_spare(const pl_central_t *c, const pl_span_t *s, unsigned cls) {
  return c->partial[shard_of(s)] == s && s->next == NULL &&
         pl_class_info[cls].pages * PL_PAGE_SIZE <= SPARE_MAX_BYTES;
}

/* Calls of pl_central_purge_idle_pages so far (a clock for span ages). */
static uint32_t purge_pass;

/* Bit mask of pages first .. last (< 32) of a span. */
static uint32_t page_mask(size_t first, size_t last) {
  uint32_t upto = last >= 31 ? 0xffffffffu : ((uint32_t)2 << last) - 1;
  return upto & ~(((uint32_t)1 << first) - 1);
}

/* Bit mask of the pages of span s that a block at p of size bytes covers. */
static uint32_t pages_of(const pl_span_t *s, const void *p, size_t size) {
  size_t off = (uintptr_t)p - s->start;
  return page_mask(off >> PL_PAGE_SHIFT, (off + size - 1) >> PL_PAGE_SHIFT);
}

/* Writes the free key into every block of s that starts under its k-th
 * page word (in its k-th 4 KiB) and is free in its bitmap.  Where all of
 * a bitmap word's blocks there are free (a span never used, the common
 * case), it steps from block to block instead of from bit to bit. */
static void key_free_blocks(pl_span_t *s, size_t k, size_t size) {
  size_t off = k << PL_PW_SHIFT;
  size_t i = (off + size - 1) / size, end = (off + ((size_t)1 << PL_PW_SHIFT) + size - 1) / size;
  if (end > s->nblocks) end = s->nblocks;
  while (i < end) {
    size_t w = i / 64, stop = (w + 1) * 64 < end ? (w + 1) * 64 : end;
    uint64_t all = pl_low_bits64(stop - i), bits = (s->free_map[w] >> (i % 64)) & all;
    if (bits == all) {
      for (uintptr_t b = s->start + i * size, last = s->start + (stop - 1) * size; b <= last; b += size)
        *(uintptr_t *)b = pl_free_key((void *)b);
    } else {
      for (; bits != 0; bits &= bits - 1) {
        void *b = (void *)(s->start + (i + (size_t)__builtin_ctzll(bits)) * size);
        *(uintptr_t *)b = pl_free_key(b);
      }
    }
    i = stop;
  }
}

/* At most this many cold page words warmed by one batch (in a build with
 * the checks on): warming a word writes the key into every free block
 * starting in its 4 KiB, so the blocks of a batch that a cache never
 * hands out are made resident too, where before only their addresses
 * moved.  Peak RSS of bench-bursts --threads 1 (5 runs): 3.15-3.30 MiB
 * before words were cold; warming every page a batch reached (a bin
 * grown for bursts refills hundreds of blocks, of which the end of a
 * burst uses a few) 3.56-3.67; one 8 KiB page a batch 2.88-2.98, which
 * two words are. */
#define COLD_TAKE_WORDS 2

/* Takes the free blocks of s with indexes in [lo, hi), in index order,
 * into o .. end, and returns where it stopped: word by word, each block
 * from its bit, or, where all of a word's blocks in the range are free,
 * by steps of the block size. */
static void **take_range(pl_span_t *s, void **o, void **end, size_t size, size_t lo, size_t hi) {
  for (size_t w = lo / 64; w < PL_SPAN_BITMAP_WORDS && w * 64 < hi && o < end; w++) {
    uint64_t word = s->free_map[w];
    size_t first = lo > w * 64 ? lo - w * 64 : 0, top = hi - w * 64 < 64 ? hi - w * 64 : 64;
    uint64_t mask = pl_low_bits64(top) & ~pl_low_bits64(first);
    uint64_t bits = word & mask;
    uintptr_t base = s->start + w * 64 * size;
    if (bits == mask) {
      size_t count = top - first, room = (size_t)(end - o);
      size_t t = count < room ? count : room;
      uintptr_t b = base + first * size;
      for (size_t j = 0; j < t; j++, b += size) o[j] = (void *)b;
      o += t;
      bits = mask & ~pl_low_bits64(first + t);
    } else {
      for (; bits != 0 && o < end; o++) {
        *o = (void *)(base + (size_t)__builtin_ctzll(bits) * size);
        bits &= bits - 1;
      }
    }
    s->free_map[w] = (word & ~mask) | bits;
  }
  return o;
}

/* Takes free blocks of s, which has cold page words (span.h), into o ..
 * end in index order, and returns where it stopped.  A cold word is
 * warmed before the first block starting under it is taken: the free key
 * first goes into every free block starting there (so that the blocks
 * taken, bound for a cache, hold it, and so do those left, which read as
 * zero or hold old bytes: a free of one of them, a block nobody holds,
 * is then caught like any other double free), then the word is set.
 * Stops before a block that would warm a word past *budget, which goes
 * down by the words warmed (a batch that has taken nothing yet comes
 * here with *budget > 0, so it takes at least one block).  No block
 * below index from is free.  The blocks between one cold word and the
 * next are taken by take_range, without a look at the words per block
 * (which cost bench-frag a fifth of the allocator's instructions). */
static PL_NOINLINE void **take_warming(pl_span_t *s, void **o, void **end, size_t size,
                                       size_t from, size_t *budget) {
  uint64_t cold = s->cold_words;
  size_t i = from, nblocks = s->nblocks;
  while (o < end && i < nblocks) {
    /* The next free block, i. */
    size_t w = i / 64;
    uint64_t bits = s->free_map[w] & ~pl_low_bits64(i % 64);
    while (bits == 0 && ++w < PL_SPAN_BITMAP_WORDS) bits = s->free_map[w];
    if (bits == 0) break;
    i = w * 64 + (size_t)__builtin_ctzll(bits);
    size_t k = (i * size) >> PL_PW_SHIFT;
    if ((cold >> k) & 1) {
      if (*budget == 0) break;
      (*budget)--;
      if (pl_config_hardening) key_free_blocks(s, k, size);
      cold &= ~((uint64_t)1 << k);
    }
    /* Blocks from i up to the first under the next cold word start under
     * warm words. */
    uint64_t above = cold & ~pl_low_bits64(k + 1);
    size_t lim = above ? ((((size_t)__builtin_ctzll(above)) << PL_PW_SHIFT) + size - 1) / size : nblocks;
    o = take_range(s, o, end, size, i, lim);
    i = lim;
  }
  pl_span_set_cold(s, s->cold_words & ~cold, false);
  return o;
}

/* Moves up to max of the newest blocks of shard sh's transfer array to
 * out (under the class lock); returns how many.  The refills' xfer_take,
 * the drains and an overflow's idle array all take this way. */
static size_t xfer_pop(pl_central_t *c, unsigned cls, unsigned sh, void **out, size_t max) {
  size_t k = c->nxfer[sh] < max ? c->nxfer[sh] : max;
  c->nxfer[sh] = (uint16_t)(c->nxfer[sh] - k);
  xfer_get(sh, cls, c->nxfer[sh], out, k);
  return k;
}

/* Moves up to n - got blocks of shard sh's transfer array to out + got
 * for a refill (which counts as the array's consumer: c->taken);
 * returns the new got. */
static size_t xfer_take(pl_central_t *c, unsigned cls, unsigned sh, void **out, size_t n, size_t got) {
  size_t k = xfer_pop(c, cls, sh, out + got, n - got);
  if (k) c->taken[sh] = true;
  return got + k;
}

/* The first partial span of a shard other than sh, or NULL. */
static pl_span_t *other_partial(const pl_central_t *c, unsigned sh) {
  for (unsigned i = 1; i < CENTRAL_SHARDS; i++)
    if (c->partial[(sh + i) % CENTRAL_SHARDS]) return c->partial[(sh + i) % CENTRAL_SHARDS];
  return NULL;
}

size_t pl_central_alloc_batch(unsigned cls, void **out, size_t n) {
  pl_central_t *c = &central[cls];
  size_t size = pl_class_info[cls].size;
  size_t got = 0, cold_budget = pl_config_hardening ? COLD_TAKE_WORDS : SIZE_MAX;
  unsigned home = my_shard();
  bool others_tried = false;
  pl_lock(&c->lock);
  got = xfer_take(c, cls, home, out, n, got);
  while (got < n) {
    /* The shard's own spans; then the other shards' transfer arrays, a
     * kept span, a new span, and only then another shard's spans. */
    pl_span_t *s = c->partial[home];
    if (s == NULL && !others_tried) {
      others_tried = true;
      for (unsigned i = 1; i < CENTRAL_SHARDS && got < n; i++)
        got = xfer_take(c, cls, (home + i) % CENTRAL_SHARDS, out, n, got);
      continue;
    }
    if (s == NULL && c->kept != NULL) {
      s = unkeep(c);
      set_shard(s, home); /* (wholly free: no other thread's blocks) */
      list_push(c, s);
    }
    if (s == NULL) {
      pl_unlock(&c->lock);
      s = new_span(cls, home);
      pl_lock(&c->lock);
      if (s == NULL) {
        s = other_partial(c, home);
        if (s == NULL) break;
      } else {
        c->nspans++;
        c->nfree_blocks += s->nblocks;
        list_push(c, s);
      }
    }
    size_t before = got;
    s->alloc_pass = __atomic_load_n(&purge_pass, __ATOMIC_RELAXED);
    void **o = out + got, **end = out + n;
    /* Blocks below index warm_end start under warm words: all of them,
     * or those before the first block under the lowest cold word. */
    size_t warm_end = s->nblocks; /* (no bit is set past it: take_range stops there) */
    if (PL_UNLIKELY(s->cold_words)) {
      size_t first_cold = (((size_t)__builtin_ctzll(s->cold_words) << PL_PW_SHIFT) + size - 1) / size;
      if (first_cold < warm_end) warm_end = first_cold;
    }
    /* (The span's count is updated once, below.) */
    o = take_range(s, o, end, size, 0, warm_end);
    /* The rest, warming words as it goes. */
    if (PL_UNLIKELY(s->cold_words) && o < end)
      o = take_warming(s, o, end, size, warm_end, &cold_budget);
    got = (size_t)(o - out);
    /* Taken in index order: the last is the highest. */
    if (got > before) {
      uint32_t past = (uint32_t)pl_class_index(cls, (uintptr_t)out[got - 1] - s->start) + 1;
      if (past > s->taken_end) s->taken_end = past;
    }
    /* Pages the blocks taken cover are in use again: no longer purged. */
    if (PL_UNLIKELY(s->purged_pages))
      for (size_t i = before; i < got; i++) s->purged_pages &= ~pages_of(s, out[i], size);
    s->nfree -= (uint32_t)(got - before);
    /* Keep the count right before the lock can be dropped again (another
     * thread, a statistics reader or a fork may look in between). */
    c->nfree_blocks -= got - before;
    if (s->nfree == 0) list_remove(c, s);
    if (cold_budget == 0) break; /* (got > 0) */
  }
  pl_unlock(&c->lock);
  return got;
}

bool pl_central_never_taken(const void *p, unsigned cls) {
  pl_central_t *c = &central[cls];
  bool never = false;
  pl_lock(&c->lock);
  pl_span_t *s = pl_span_of(p);
  if (s != NULL && s->state == PL_SPAN_SMALL && s->cls == cls) {
    size_t off = (uintptr_t)p - s->start;
    size_t idx = pl_class_index(cls, off);
    never = idx * pl_class_info[cls].size == off && idx >= s->taken_end && idx < s->nblocks &&
            ((s->free_map[idx / 64] >> (idx % 64)) & 1);
  }
  pl_unlock(&c->lock);
  return never;
}

/* Returns blocks to their spans' bitmaps (catching any already free). */
static void free_to_spans(unsigned cls, void *const *blocks, size_t n) {
  pl_central_t *c = &central[cls];
  uint64_t recip = pl_class_info[cls].recip;
  /* Wholly free spans go back to the heap after the class lock is
   * released (the heap may purge, which is a system call). */
  enum { RELEASE_MAX = 16 };
  pl_span_t *release[RELEASE_MAX];
  size_t nrelease = 0;
  size_t i = 0;
  while (i < n) {
    size_t freed = 0;
    pl_lock(&c->lock);
    while (i < n) {
      void *p = blocks[i];
      pl_span_t *s = pl_span_of(p);
      if (PL_UNLIKELY(s == NULL || s->state != PL_SPAN_SMALL || s->cls != cls)) {
        /* Its span went back to the heap (or was never this class's):
         * the block was given back before. */
        pl_unlock(&c->lock);
        bool gone = s != NULL && (s->state == PL_SPAN_FREE || s->state == PL_SPAN_BUSY);
        pl_fatal_ptr("free", gone ? "double free" : "invalid pointer", p);
      }
      /* This block and those after it in s (blocks flushed together
       * mostly share spans): their bits set with s's fields held in
       * locals, its count updated once.  Block start, index and bound
       * are checked for each (a bin holds only checked blocks, so these
       * guard against a corrupted bin), and a bit already set is a
       * double free. */
      uintptr_t start = s->start, bytes = (uintptr_t)s->npages << PL_PAGE_SHIFT;
      uint64_t nblocks = s->nblocks, *map = s->free_map;
      uint32_t run = 0;
      do {
        uint64_t prod = ((uintptr_t)p - start) * recip, idx = prod >> PL_RECIP_SHIFT;
        pl_assert(pl_class_prod_starts_block(prod) && idx < nblocks);
        uint64_t bit = (uint64_t)1 << (idx % 64), word = map[idx / 64];
        if (PL_UNLIKELY(word & bit)) {
          pl_unlock(&c->lock);
          pl_fatal_ptr("free", "double free", p);
        }
        map[idx / 64] = word | bit;
        run++;
        if (++i == n) break;
        p = blocks[i];
      } while ((uintptr_t)p - start < bytes);
      freed += run;
      if (!s->listed) list_push(c, s);
      s->nfree += run;
      if (PL_UNLIKELY(s->nfree == s->nblocks) && !keep_spare(c, s, cls)) {
        list_remove(c, s);
        if (keep_empty(c, s)) continue;
        c->nspans--;
        c->nfree_blocks -= s->nblocks;
        release[nrelease++] = s;
        if (nrelease == RELEASE_MAX) break;
      }
    }
    c->nfree_blocks += freed;
    pl_unlock(&c->lock);
    for (size_t k = 0; k < nrelease; k++) pl_span_free(release[k]);
    nrelease = 0;
  }
}

/* pl_central_free_batch when shard sh's transfer array has no room for
 * the batch; called with the class lock held, returns with it released.
 * If no refill took from the array since it last overflowed, nobody is
 * consuming what it holds (a thread freeing what it no longer needs, say
 * at the end of a burst): it goes back to the spans too, so that they
 * can become wholly free and return to the heap.  Kept out of line: its
 * copy of the array (4 KiB) would otherwise be in the frame of every
 * flush (gcc -fstack-usage: 4224 bytes, 128 without it). */
static PL_NOINLINE void free_batch_overflow(pl_central_t *c, unsigned cls, unsigned sh,
                                            void *const *blocks, size_t n) {
  void *idle[XFER_MAX];
  size_t nidle = c->taken[sh] ? 0 : xfer_pop(c, cls, sh, idle, XFER_MAX);
  c->taken[sh] = false;
  pl_unlock(&c->lock);
  free_to_spans(cls, blocks, n);
  if (nidle) free_to_spans(cls, idle, nidle);
}

void pl_central_free_batch(unsigned cls, void *const *blocks, size_t n) {
  pl_central_t *c = &central[cls];
  size_t size = pl_class_info[cls].size;
  size_t cap = size > XFER_SIZE_MAX ? XFER_BIG : XFER_BYTES / size;
  if (cap > XFER_MAX) cap = XFER_MAX;
  unsigned sh = batch_shard(cls, blocks[0]);
  pl_lock(&c->lock);
  if (PL_UNLIKELY(c->nxfer[sh] + n > cap)) {
    free_batch_overflow(c, cls, sh, blocks, n);
    return;
  }
  /* Room for the whole batch in the shard's transfer array. */
  xfer_put(sh, cls, c->nxfer[sh], blocks, n);
  c->nxfer[sh] = (uint16_t)(c->nxfer[sh] + n);
  pl_unlock(&c->lock);
}

/* Moves the blocks of the transfer arrays back into their spans. */
void pl_central_drain(unsigned cls) {
  pl_central_t *c = &central[cls];
  void *batch[64];
  for (unsigned sh = 0; sh < CENTRAL_SHARDS; sh++) {
    for (;;) {
      pl_lock(&c->lock);
      size_t k = xfer_pop(c, cls, sh, batch, sizeof batch / sizeof batch[0]);
      pl_unlock(&c->lock);
      if (k == 0) break;
      free_to_spans(cls, batch, k);
    }
  }
}

/* Gives class c's kept spans back to the heap, each free since it was
 * kept. */
static void release_kept_class(pl_central_t *c) {
  for (;;) {
    pl_lock(&c->lock);
    pl_span_t *s = c->kept;
    if (s == NULL) {
      pl_unlock(&c->lock);
      return;
    }
    uint64_t since = s->free_since;
    unkeep(c);
    c->nspans--;
    c->nfree_blocks -= s->nblocks;
    pl_unlock(&c->lock);
    pl_span_free_since(s, since);
  }
}

/* Set while pl_central_release_kept runs (reset in a forked child). */
static int releasing_kept;

void pl_central_release_kept(void) {
  __atomic_store_n(&keep_ok, false, __ATOMIC_RELAXED);
  if (__atomic_load_n(&kept_bytes, __ATOMIC_RELAXED) == 0 ||
      __atomic_exchange_n(&releasing_kept, 1, __ATOMIC_ACQUIRE))
    return;
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) release_kept_class(&central[cls]);
  __atomic_store_n(&releasing_kept, 0, __ATOMIC_RELEASE);
}

void pl_central_release_spares(void) {
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) {
    pl_central_t *c = &central[cls];
    pl_central_drain(cls);
    release_kept_class(c);
    for (;;) {
      pl_span_t *victim = NULL;
      pl_lock(&c->lock);
      for (unsigned sh = 0; sh < CENTRAL_SHARDS && victim == NULL; sh++) {
        for (pl_span_t *s = c->partial[sh]; s; s = s->next) {
          if (s->nfree == s->nblocks) {
            victim = s;
            list_remove(c, s);
            c->nspans--;
            c->nfree_blocks -= s->nblocks;
            break;
          }
        }
      }
      pl_unlock(&c->lock);
      if (victim == NULL) break;
      pl_span_free(victim);
    }
  }
}

/* Whether blocks first .. last of s are all free in its bitmap. */
static bool all_free(const pl_span_t *s, size_t first, size_t last) {
  for (size_t w = first / 64; w <= last / 64; w++) {
    size_t lo = w * 64 > first ? 0 : first - w * 64, hi = last - w * 64 < 63 ? last - w * 64 + 1 : 64;
    uint64_t want = pl_low_bits64(hi) & ~pl_low_bits64(lo);
    if ((s->free_map[w] & want) != want) return false;
  }
  return true;
}

/* Pages of s every block on which is free in its bitmap: page by page,
 * from the bits of the blocks that overlap it (a pass over the used
 * blocks instead cost every decay pass time in proportion to the live
 * blocks of every partly used span). */
static uint32_t free_pages(const pl_span_t *s, unsigned cls) {
  uint32_t pages = 0;
  for (size_t p = 0; p < s->npages; p++) {
    size_t first = pl_class_index(cls, p << PL_PAGE_SHIFT);
    size_t last = pl_class_index(cls, ((p + 1) << PL_PAGE_SHIFT) - 1);
    if (last >= s->nblocks) last = s->nblocks - 1;
    if (first >= s->nblocks || all_free(s, first, last)) pages |= (uint32_t)1 << p;
  }
  return pages;
}

size_t pl_central_purge_idle_pages(unsigned min_passes) {
  if (pl_opt.junk) return 0;
  uint32_t pass = __atomic_add_fetch(&purge_pass, 1, __ATOMIC_RELAXED);
  size_t released = 0;
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) {
    pl_central_t *c = &central[cls];
    size_t size = pl_class_info[cls].size;
    pl_lock(&c->lock);
    for (unsigned sh = 0; sh < CENTRAL_SHARDS; sh++) {
      for (pl_span_t *s = c->partial[sh]; s; s = s->next) {
        if ((size_t)s->nfree * size < PL_PAGE_SIZE) continue; /* no page can be free */
        if (pass - s->alloc_pass < min_passes) continue;
        uint32_t todo = free_pages(s, cls) & ~s->purged_pages;
        /* Under the class lock: no block on these pages can be taken
         * while they are purged. */
        while (todo) {
          unsigned p = (unsigned)__builtin_ctz(todo);
          unsigned q = p;
          while (q < 32 && (todo >> q) & 1) q++;
          size_t bytes = (size_t)(q - p) << PL_PAGE_SHIFT;
          uint32_t run = page_mask(p, q - 1);
          /* First the page words: the purge wipes the free keys of the
           * blocks there, so a second free of one of them must reach the
           * slow path, which knows every block on the page is free. */
          s->purged_pages |= run;
          pl_span_set_cold(s, words_of_pages(run) & ~pl_class_inner_words[cls], true); /* (those stay warm) */
          if (pl_os_purge((void *)(s->start + ((size_t)p << PL_PAGE_SHIFT)), bytes, pl_span_purge_mode))
            released += bytes;
          todo &= ~run;
        }
      }
    }
    pl_unlock(&c->lock);
  }
  return released;
}

size_t pl_central_kept_bytes(void) { return __atomic_load_n(&kept_bytes, __ATOMIC_RELAXED); }

/* Summed under each class lock rather than kept in one shared counter:
 * every refill and flush of every thread updated that counter, a locked
 * add on one cache line, for a figure only thread exit reads. */
size_t pl_central_xfer_bytes(void) {
  size_t bytes = 0;
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) {
    pl_central_t *c = &central[cls];
    pl_lock(&c->lock);
    bytes += xfer_count(c) * pl_class_info[cls].size;
    pl_unlock(&c->lock);
  }
  return bytes;
}

void pl_central_totals(unsigned cls, pl_central_totals_t *t) {
  pl_central_t *c = &central[cls];
  pl_lock(&c->lock);
  t->spans = c->nspans;
  t->blocks = c->nspans * pl_class_info[cls].nblocks;
  t->free_blocks = c->nfree_blocks + xfer_count(c);
  pl_unlock(&c->lock);
}

/* Reports a span of the given kind (central, kept) that breaks an
 * invariant; returns -1. */
static int check_fail_span(const char *kind, const pl_span_t *s) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: heap check: ");
  pl_msg_str(&m, kind);
  pl_msg_str(&m, " span inconsistent at ");
  pl_msg_hex(&m, s->start);
  pl_msg_str(&m, "\n");
  pl_msg_write(&m);
  return -1;
}

int pl_central_check(void) {
  int rc = 0;
  for (unsigned cls = 1; cls <= PL_NCLASSES && rc == 0; cls++) {
    pl_central_t *c = &central[cls];
    pl_lock(&c->lock);
    size_t listed_free = 0;
    for (unsigned sh = 0; sh < CENTRAL_SHARDS && rc == 0; sh++) {
      for (pl_span_t *s = c->partial[sh]; s; s = s->next) {
        size_t pop = 0;
        bool untaken_free = s->taken_end <= s->nblocks;
        for (size_t w = 0; w < PL_SPAN_BITMAP_WORDS; w++) {
          pop += (size_t)__builtin_popcountll(s->free_map[w]);
          /* Blocks never handed out, [taken_end, nblocks), are free in the
           * bitmap: the bits of word w from lo up to hi. */
          size_t lo = s->taken_end > w * 64 ? s->taken_end - w * 64 : 0;
          size_t hi = s->nblocks > w * 64 ? s->nblocks - w * 64 : 0;
          uint64_t past = lo < hi ? pl_low_bits64(hi) & ~pl_low_bits64(lo) : 0;
          untaken_free = untaken_free && (s->free_map[w] & past) == past;
        }
        if (s->state != PL_SPAN_SMALL || s->cls != cls || !s->listed || shard_of(s) != sh ||
            pop != s->nfree || s->nfree == 0 || s->nfree > s->nblocks || !untaken_free) {
          rc = check_fail_span("central", s);
          break;
        }
        listed_free += s->nfree;
      }
    }
    for (pl_span_t *s = rc == 0 ? c->kept : NULL; s; s = s->next) {
      size_t pop = 0;
      for (size_t w = 0; w < PL_SPAN_BITMAP_WORDS; w++) pop += (size_t)__builtin_popcountll(s->free_map[w]);
      if (s->state != PL_SPAN_SMALL || s->cls != cls || s->listed || s->flags != PL_SPAN_KEPT ||
          pop != s->nblocks || s->nfree != s->nblocks) {
        rc = check_fail_span("kept", s);
        break;
      }
      listed_free += s->nfree;
    }
    if (rc == 0 && listed_free != c->nfree_blocks) {
      pl_msg_t m = {.len = 0};
      pl_msg_str(&m, "pallet: heap check: central free count wrong for class ");
      pl_msg_dec(&m, cls);
      pl_msg_str(&m, " (spans say ");
      pl_msg_dec(&m, listed_free);
      pl_msg_str(&m, ", the count says ");
      pl_msg_dec(&m, c->nfree_blocks);
      pl_msg_str(&m, ")\n");
      pl_msg_write(&m);
      rc = -1;
    }
    pl_unlock(&c->lock);
  }
  return rc;
}

void pl_central_lock_all(void) {
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) pl_lock(&central[cls].lock);
}
void pl_central_unlock_all(void) {
  for (unsigned cls = PL_NCLASSES; cls >= 1; cls--) pl_unlock(&central[cls].lock);
}
void pl_central_fork_prepare(void) { pl_central_lock_all(); }
void pl_central_fork_parent(void) { pl_central_unlock_all(); }
void pl_central_fork_child(void) {
  /* A thread of the parent may have been giving kept spans back: the
   * child has no such thread. */
  releasing_kept = 0;
  for (unsigned cls = 1; cls <= PL_NCLASSES; cls++) pl_lock_init(&central[cls].lock);
}
