/*
 * frag.c — fragmentation: how much memory a holey heap keeps.
 *
 * usage: bench-frag [--quick] [--ops N]
 *
 * 1. allocate N blocks of 16–64 B (random);
 * 2. free every other one (the heap is now half holes);
 * 3. allocate N/2 blocks of a third size band, 80–160 B, which cannot reuse
 *    the holes unless the allocator coalesces or returns them;
 * then read VmRSS (rss_kib: the heap holding ~live_kib of user data) and
 * VmHWM (hwm_kib, the peak); free everything and read VmRSS again
 * (rss_end_kib: what the allocator keeps once the program holds nothing).
 * ops = N.  Lower RSS is better; the time is reported too.
 */
#include "bench.h"

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  long long n = bench_ops(&a, 4000000);
  uint64_t rng = a.seed;
  long rss_start = bench_status_kib("VmRSS");
  /* The pointer array is one large block (n * 8 bytes), which every
   * allocator maps on its own; it is the benchmark's memory, the same for
   * all, and is included in base_kib (RSS before the first small block). */
  unsigned char **p = calloc((size_t)n, sizeof *p);
  if (p == NULL)
    bench_die("frag", "out of memory");
  memset(p, 0, (size_t)n * sizeof *p);
  long base = bench_status_kib("VmRSS");

  double t0 = bench_now();
  for (long long i = 0; i < n; i++) {
    size_t sz = bench_range(&rng, 16, 64);
    p[i] = malloc(sz);
    if (p[i] == NULL)
      bench_die("frag", "out of memory");
    memset(p[i], 0x5a, sz);
  }
  for (long long i = 0; i < n; i += 2) {
    free(p[i]);
    p[i] = NULL;
  }
  for (long long i = 0; i < n; i += 2) {
    size_t sz = bench_range(&rng, 80, 160);
    p[i] = malloc(sz);
    if (p[i] == NULL)
      bench_die("frag", "out of memory");
    memset(p[i], 0xa5, sz);
  }
  double t_build = bench_now() - t0;
  long rss = bench_status_kib("VmRSS");
  long hwm = bench_status_kib("VmHWM");

  double t1 = bench_now();
  for (long long i = 0; i < n; i++)
    free(p[i]);
  double t = t_build + (bench_now() - t1);
  long rss_end = bench_status_kib("VmRSS");

  /* user bytes live at the measurement point: the odd 16–64 B blocks and
   * the even 80–160 B ones; recompute from the same random sequence. */
  uint64_t r2 = a.seed;
  size_t odd = 0, even = 0;
  for (long long i = 0; i < n; i++) {
    size_t sz = bench_range(&r2, 16, 64);
    if (i & 1)
      odd += sz;
  }
  for (long long i = 0; i < n; i += 2)
    even += bench_range(&r2, 80, 160);
  size_t live = odd + even;

  bench_result("frag", n, t,
               "live_kib=%zu rss_kib=%ld hwm_kib=%ld rss_end_kib=%ld "
               "base_kib=%ld start_kib=%ld",
               live / 1024, rss, hwm, rss_end, base, rss_start);
  free(p);
  return 0;
}
