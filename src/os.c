/*
 * os.c — mmap, munmap, mremap, madvise, mincore, time, randomness, and
 * symbols of the objects loaded.
 * Every entry point saves and restores errno, so that free() and the
 * heap's housekeeping never change what the program sees in errno.
 */
#include "os.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

size_t pl_os_page_size(void) {
  static size_t page;
  size_t v = __atomic_load_n(&page, __ATOMIC_RELAXED);
  if (PL_UNLIKELY(v == 0)) {
    unsigned long p = getauxval(AT_PAGESZ);
    v = p ? (size_t)p : 4096;
    __atomic_store_n(&page, v, __ATOMIC_RELAXED);
  }
  return v;
}

/* Without MAP_NORESERVE: the kernel's overcommit policy then judges each
 * mapping, as it does glibc's.  Under the default heuristic a request
 * beyond what the machine could ever back (say malloc of 32 TiB with
 * 24 GiB of memory) fails here, and malloc returns NULL with ENOMEM,
 * where with the flag it succeeded and the program was killed when it
 * touched the pages.  (The arena's reservations, chunk.c, keep the flag:
 * they are address space, made writable a chunk at a time.) */
static void *map_raw(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *pl_os_map(size_t size, size_t align) {
  int saved = errno;
  void *res = NULL;
  if (size == 0 || size > PL_MAX_REQUEST - align) goto out;
  void *p = map_raw(size);
  if (p == NULL) goto out;
  if (((uintptr_t)p & (align - 1)) == 0) {
    res = p;
    goto out;
  }
  /* Misaligned: map again with room to spare and trim both ends. */
  munmap(p, size);
  p = map_raw(size + align);
  if (p == NULL) goto out;
  uintptr_t start = PL_ALIGN_UP((uintptr_t)p, align);
  size_t head = start - (uintptr_t)p;
  size_t tail = align - head;
  if (head) munmap(p, head);
  if (tail) munmap((void *)(start + size), tail);
  res = (void *)start;
out:
  errno = saved;
  return res;
}

void pl_os_unmap(void *addr, size_t size) {
  int saved = errno;
  if (size) munmap(addr, size);
  errno = saved;
}

bool pl_os_resize_inplace(void *addr, size_t old_size, size_t new_size) {
  int saved = errno;
  bool ok;
  if (new_size == old_size) {
    ok = true;
  } else if (new_size < old_size) {
    ok = munmap((char *)addr + new_size, old_size - new_size) == 0;
  } else {
    void *p = mremap(addr, old_size, new_size, 0);
    ok = p != MAP_FAILED;
  }
  errno = saved;
  return ok;
}

bool pl_os_move(void *from, size_t size, void *to) {
  int saved = errno;
  void *p = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  errno = saved;
  return p == to;
}

bool pl_os_purge(void *addr, size_t size, pl_purge_mode_t mode) {
  int saved = errno;
  int r = -1;
  if (mode == PL_PURGE_FREE) r = madvise(addr, size, MADV_FREE);
  if (r != 0) r = madvise(addr, size, MADV_DONTNEED);
  errno = saved;
  return r == 0;
}

size_t pl_os_resident(void *addr, size_t size) {
  int saved = errno;
  size_t page = pl_os_page_size();
  unsigned char vec[256];
  size_t total = 0;
  uintptr_t a = (uintptr_t)addr;
  uintptr_t end = a + size;
  while (a < end) {
    size_t n = (end - a) / page;
    if (n > sizeof vec) n = sizeof vec;
    if (n == 0) n = 1;
    if (mincore((void *)a, n * page, vec) == 0) {
      for (size_t i = 0; i < n; i++) total += (vec[i] & 1) ? page : 0;
    }
    a += n * page;
  }
  errno = saved;
  return total;
}

uint64_t pl_os_now_ms(void) {
  int saved = errno;
  struct timespec ts;
  /* The coarse clock (a few ms of resolution, plenty for decay times of
   * 100 ms and more) is read without the TSC: slow paths read it at every
   * 4th refill or flush, and free ticks every 128 frees. */
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  errno = saved;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t pl_os_random(void) {
  int saved = errno;
  uint64_t r = 0;
  const unsigned char *at = (const unsigned char *)getauxval(AT_RANDOM);
  if (at) {
    for (int i = 0; i < 8; i++) r = (r << 8) | at[i];
  }
  uint64_t g = 0;
  if (getrandom(&g, sizeof g, GRND_NONBLOCK) == (ssize_t)sizeof g) r ^= g;
  /* Fall back on the address of a stack variable and the clock. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r ^= (uint64_t)(uintptr_t)&g * 0x9e3779b97f4a7c15ull;
  r ^= (uint64_t)ts.tv_nsec << 17;
  errno = saved;
  return r;
}

unsigned pl_os_ncpus(void) {
  int saved = errno;
  uint64_t mask[64] = {0}; /* 4096 CPUs (a kernel built for more refuses: 1) */
  long n = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  unsigned count = 0;
  for (long i = 0; i < n / 8; i++) count += (unsigned)__builtin_popcountll(mask[i]);
  errno = saved;
  return count ? count : 1;
}

/* ---- symbols of the loaded objects ----------------------------------- */

typedef struct find_sym {
  const char *name;
  uint32_t hash; /* the GNU hash of name */
  void *addr;
} find_sym_t;

static uint32_t gnu_hash(const char *s) {
  uint32_t h = 5381;
  for (; *s; s++) h = h * 33 + (unsigned char)*s;
  return h;
}

/* A d_ptr of a loaded object's dynamic section: the dynamic linker has
 * made most of them absolute (DT_SYMTAB, DT_STRTAB, DT_GNU_HASH), but not
 * in a read-only dynamic section such as the vDSO's. */
static uintptr_t dyn_addr(const struct dl_phdr_info *info, ElfW(Addr) p) {
  return p < info->dlpi_addr ? info->dlpi_addr + p : p;
}

/* Looks f->name up in one object by its GNU hash table (the layout of
 * DT_GNU_HASH: nbuckets, symoffset, bloom words, bloom shift, the bloom
 * filter, the buckets, then one hash word per symbol from symoffset on,
 * the last of each chain with its low bit set). */
static int find_in_object(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  find_sym_t *f = data;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    const ElfW(Sym) *syms = NULL;
    const char *strs = NULL;
    const uint32_t *ht = NULL;
    const uint16_t *versym = NULL;
    for (; d->d_tag != DT_NULL; d++) {
      if (d->d_tag == DT_SYMTAB) syms = (const ElfW(Sym) *)dyn_addr(info, d->d_un.d_ptr);
      else if (d->d_tag == DT_STRTAB) strs = (const char *)dyn_addr(info, d->d_un.d_ptr);
      else if (d->d_tag == DT_GNU_HASH) ht = (const uint32_t *)dyn_addr(info, d->d_un.d_ptr);
      else if (d->d_tag == DT_VERSYM) versym = (const uint16_t *)dyn_addr(info, d->d_un.d_ptr);
    }
    if (syms == NULL || strs == NULL || ht == NULL) return 0;
    uint32_t nbuckets = ht[0], symoffset = ht[1], nbloom = ht[2], shift = ht[3];
    if (nbuckets == 0 || nbloom == 0) return 0;
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)(ht + 4);
    const uint32_t *buckets = (const uint32_t *)(bloom + nbloom);
    const uint32_t *chain = buckets + nbuckets;
    const unsigned bits = sizeof(ElfW(Addr)) * 8;
    uint32_t h = f->hash;
    ElfW(Addr) want = ((ElfW(Addr))1 << (h % bits)) | ((ElfW(Addr))1 << ((h >> shift) % bits));
    if ((bloom[(h / bits) % nbloom] & want) != want) return 0;
    for (uint32_t k = buckets[h % nbuckets]; k >= symoffset && k != 0; k++) {
      uint32_t hk = chain[k - symoffset];
      const ElfW(Sym) *sym = &syms[k];
      /* Not an ifunc (its value is its resolver's: not what a caller
       * wants; the type is st_info's low 4 bits in ELF32 and ELF64
       * alike), nor an old version kept for old binaries (marked hidden
       * in DT_VERSYM), which an unversioned lookup does not bind to. */
      if ((hk | 1) == (h | 1) && sym->st_shndx != SHN_UNDEF && sym->st_value != 0 &&
          ELF64_ST_TYPE(sym->st_info) != STT_GNU_IFUNC &&
          (versym == NULL || !(versym[k] & 0x8000)) && strcmp(strs + sym->st_name, f->name) == 0) {
        f->addr = (void *)(info->dlpi_addr + sym->st_value);
        return 1;
      }
      if (hk & 1) break;
    }
    return 0;
  }
  return 0;
}

void *pl_os_find_symbol(const char *name) {
  int saved = errno;
  find_sym_t f = {name, gnu_hash(name), NULL};
  dl_iterate_phdr(find_in_object, &f);
  errno = saved;
  return f.addr;
}
