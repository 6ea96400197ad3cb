/*
 * bigblocks.c — large blocks allocated, touched and freed in a loop.
 *
 * usage: bench-bigblocks [--quick] [--ops N]
 *
 * Two live blocks of random sizes between 1 and 8 MiB; each operation frees
 * the older one and allocates a new one, writing one byte in every 4 KiB
 * page of it.  An allocator that hands freed pages back to the kernel at
 * once (munmap or MADV_DONTNEED) makes every page fault again on the next
 * round: that shows as system time and minor faults, reported beside the
 * wall time (user_s, sys_s, minflt are for the timed loop only).
 */
#include "bench.h"

#define PAGE 4096

int main(int argc, char **argv) {
  struct bench_args a;
  struct rusage r0, r1;
  unsigned char *live[2];
  bench_parse_options(argc, argv, &a);
  long long ops = bench_ops(&a, 4000);
  uint64_t rng = a.seed;
  size_t touched = 0;

  for (int i = 0; i < 2; i++) {
    live[i] = malloc(1 << 20);
    if (live[i] == NULL)
      bench_die("bigblocks", "out of memory");
    live[i][0] = 1;
  }
  getrusage(RUSAGE_SELF, &r0);
  double t0 = bench_now();
  for (long long i = 0; i < ops; i++) {
    size_t n = bench_range(&rng, (size_t)1 << 20, (size_t)8 << 20);
    int k = (int)(i & 1);
    free(live[k]);
    unsigned char *p = malloc(n);
    if (p == NULL)
      bench_die("bigblocks", "out of memory");
    for (size_t off = 0; off < n; off += PAGE)
      p[off] = (unsigned char)off;
    p[n - 1] = 1;
    touched += (n + PAGE - 1) / PAGE;
    bench_escape(p);
    live[k] = p;
  }
  double t = bench_now() - t0;
  getrusage(RUSAGE_SELF, &r1);
  free(live[0]);
  free(live[1]);

  bench_result("bigblocks", ops, t,
               "user_s=%.3f sys_s=%.3f minflt=%ld pages_touched=%zu",
               bench_tv(r1.ru_utime) - bench_tv(r0.ru_utime),
               bench_tv(r1.ru_stime) - bench_tv(r0.ru_stime),
               r1.ru_minflt - r0.ru_minflt, touched);
  return 0;
}
