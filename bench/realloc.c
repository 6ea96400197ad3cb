/*
 * realloc.c — strings and vectors growing one element at a time.
 *
 * usage: bench-realloc [--quick] [--ops N]
 *
 * Each round grows, interleaved (one step for each in turn, so that their
 * blocks are neighbours and in-place growth is not free):
 *   - 256 strings by one character each step (realloc to len + 1), each up
 *     to a random length of 16 B – 4 KiB;
 *   - 16 vectors of 8-byte elements by one element each step (realloc to
 *     (n + 1) * 8), each up to a random 1 – 32 K elements (≤ 256 KiB).
 * Everything is checked and freed at the end of the round.  Rounds repeat
 * until ops realloc calls are done.  Nothing here rounds capacities up:
 * that is the allocator's job (or not).
 */
#include "bench.h"

#define NSTR 256
#define NVEC 16

struct str {
  char *p;
  size_t len, target;
};

struct vec {
  uint64_t *p;
  size_t n, target;
};

int main(int argc, char **argv) {
  struct bench_args a;
  static struct str s[NSTR];
  static struct vec v[NVEC];
  bench_parse_options(argc, argv, &a);
  long long ops = bench_ops(&a, 30000000), done = 0;
  long long rounds = 0;
  uint64_t rng = a.seed;

  double t0 = bench_now();
  while (done < ops) {
    int active;
    for (int i = 0; i < NSTR; i++)
      s[i] = (struct str){NULL, 0, bench_range(&rng, 16, 4096)};
    for (int i = 0; i < NVEC; i++)
      v[i] = (struct vec){NULL, 0, bench_range(&rng, 1024, 32768)};
    do {
      active = 0;
      for (int i = 0; i < NSTR; i++) {
        if (s[i].len == s[i].target)
          continue;
        char *p = realloc(s[i].p, s[i].len + 1);
        if (p == NULL)
          bench_die("realloc", "out of memory");
        p[s[i].len] = (char)('a' + s[i].len % 26);
        s[i].p = p;
        s[i].len++;
        active = 1;
        done++;
      }
      for (int i = 0; i < NVEC; i++) {
        for (int step = 0; step < 8 && v[i].n < v[i].target; step++) {
          uint64_t *p = realloc(v[i].p, (v[i].n + 1) * sizeof *p);
          if (p == NULL)
            bench_die("realloc", "out of memory");
          p[v[i].n] = v[i].n;
          v[i].p = p;
          v[i].n++;
          active = 1;
          done++;
        }
      }
    } while (active);
    for (int i = 0; i < NSTR; i++) {
      size_t k = s[i].len - 1;
      if (s[i].p[0] != 'a' || s[i].p[k] != (char)('a' + k % 26))
        bench_die("realloc", "string contents lost: allocator bug");
      free(s[i].p);
    }
    for (int i = 0; i < NVEC; i++) {
      if (v[i].p[v[i].n / 2] != v[i].n / 2 || v[i].p[v[i].n - 1] != v[i].n - 1)
        bench_die("realloc", "vector contents lost: allocator bug");
      free(v[i].p);
    }
    rounds++;
  }
  double t = bench_now() - t0;
  bench_result("realloc", done, t, "rounds=%lld strings=%d vectors=%d",
               rounds, NSTR, NVEC);
  return 0;
}
