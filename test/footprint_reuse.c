/*
 * footprint_reuse.c — memory given back is used again, and reads right.
 *
 * Several rounds of: allocate a 128 MiB mixed working set (alternately
 * with malloc, every byte written non-zero, and with calloc, every byte
 * checked to read zero), free it in shuffled order, and (in the trim
 * variant) call malloc_trim.  The memory of a later round comes from
 * pages pallet purged (MADV_DONTNEED or MADV_FREE) or unmapped and mapped
 * again, so:
 *   - pallet_stats_get().mapped at the peak of any round must not exceed
 *     the first round's peak, plus two 4 MiB chunks of slack for layout
 *     with trim, four without (then freed blocks stay in partly used spans
 *     and the central lists, and the layout fragments: measured, the peak
 *     creeps up by about 8 % over eight rounds and stays there), nor the
 *     process's virtual size grow round after round (address space is not
 *     leaked: a round that leaked its working set would add 128 MiB);
 *   - every calloc'd block reads as zero although the pages before held
 *     non-zero bytes (a purged span wrongly taken as zeroed, or MADV_FREE
 *     pages taken as zero, show up here).
 * The rounds run in this process with the default options, and again in
 * children started with PALLET_PURGE=free, PALLET_RETAIN_CHUNKS=1024
 * (trim purges chunks instead of unmapping them, so the next round reuses
 * purged pages) and PALLET_DIRTY_MAX=0.
 */
#include "footprint_util.h"

#define WORKING_SET (128 * FP_MIB)
#define ROUNDS 4
#define MAPPED_SLACK_TRIM (8 * FP_MIB)
#define MAPPED_SLACK_NOTRIM (16 * FP_MIB)
#define VSIZE_SLACK (16 * FP_MIB)

static char errbuf[512];

/* Runs the rounds; NULL on success, else what went wrong. */
static const char *reuse_rounds(int trim, int verbose)
{
  struct fp_burst b;
  size_t peak_mapped[ROUNDS], peak_vsize[ROUNDS];
  unsigned r;
  const char *err = NULL;
  size_t slack = trim ? MAPPED_SLACK_TRIM : MAPPED_SLACK_NOTRIM;

  if (fp_burst_init(&b, 300000) != 0)
    return "mmap of the bookkeeping arrays failed";
  pallet_free(pallet_malloc(1)); /* set-up, not measured */

  for (r = 0; r < ROUNDS && err == NULL; r++) {
    pallet_stats_t st;
    int use_calloc = (r % 2) == 1;
    /* The same seed each round: the same sizes in the same order. */
    if (fp_burst_alloc(&b, WORKING_SET, 4242, 1, use_calloc) != 0) {
      err = "pallet returned NULL";
      break;
    }
    if (use_calloc) {
      size_t i = fp_burst_check_zero_and_touch(&b);
      if (i != (size_t)-1) {
        snprintf(errbuf, sizeof errbuf,
                 "round %u: calloc(1, %zu) = %p does not read as zero at offset %zu",
                 r + 1, b.size[i], b.ptr[i], tu_first_nonzero(b.ptr[i], b.size[i]));
        err = errbuf;
      }
    }
    pallet_stats_get(&st);
    peak_mapped[r] = st.mapped;
    peak_vsize[r] = fp_vsize();
    if (verbose)
      fprintf(stderr, "    round %u (%s, %s): %zu blocks; peak mapped %.1f MiB, "
              "process virtual size %.1f MiB, purged %.1f MiB\n", r + 1,
              use_calloc ? "calloc" : "malloc", trim ? "trim" : "no trim", b.n,
              fp_mib(st.mapped), fp_mib(peak_vsize[r]), fp_mib(st.purged));
    fp_burst_free(&b, 17 + r);
    if (trim)
      pallet_malloc_trim(0);
    if (err == NULL && r > 0 && peak_mapped[r] > peak_mapped[0] + slack) {
      snprintf(errbuf, sizeof errbuf,
               "round %u (%s): pallet maps %.1f MiB at the peak, round 1 mapped "
               "%.1f MiB for the same working set", r + 1, trim ? "trim" : "no trim", fp_mib(peak_mapped[r]),
               fp_mib(peak_mapped[0]));
      err = errbuf;
    }
    if (err == NULL && r > 1 && peak_vsize[r] > peak_vsize[1] + VSIZE_SLACK + slack) {
      snprintf(errbuf, sizeof errbuf,
               "round %u (%s): virtual size %.1f MiB at the peak, round 2 had %.1f MiB",
               r + 1, trim ? "trim" : "no trim", fp_mib(peak_vsize[r]), fp_mib(peak_vsize[1]));
      err = errbuf;
    }
  }
  if (err == NULL && pallet_heap_check() != 0)
    err = "pallet_heap_check failed";
  fp_burst_destroy(&b);
  return err;
}

static void test_reuse_after_trim(void **state)
{
  const char *err;
  (void)state;
  tu_watchdog("footprint_reuse trim", 60);
  err = reuse_rounds(1, 1);
  if (err != NULL)
    fail_msg("%s", err);
}

static void test_reuse_without_trim(void **state)
{
  const char *err;
  (void)state;
  tu_watchdog("footprint_reuse no trim", 60);
  err = reuse_rounds(0, 1);
  if (err != NULL)
    fail_msg("%s", err);
}

/* The child: both variants under the options it was started with. */
static int child_main(void)
{
  const char *err;
  tu_watchdog("footprint_reuse child", 60);
  err = reuse_rounds(1, 0);
  if (err == NULL)
    err = reuse_rounds(0, 0);
  if (err != NULL) {
    fprintf(stderr, "footprint_reuse child (%s%s%s): %s\n",
            getenv("PALLET_PURGE") ? "PALLET_PURGE=free " : "",
            getenv("PALLET_RETAIN_CHUNKS") ? "PALLET_RETAIN_CHUNKS set " : "",
            getenv("PALLET_DIRTY_MAX") ? "PALLET_DIRTY_MAX set" : "", err);
    return 1;
  }
  return 0;
}

static void run_child(const char *const *env)
{
  int status = fp_reexec("child", env, 60);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    char how[128];
    tu_describe_status(status, how, sizeof how);
    fail_msg("the child with %s %s", env[0], how);
  }
}

static void test_reuse_purge_free(void **state)
{
  static const char *const env[] = {"PALLET_PURGE=free", NULL};
  (void)state;
  run_child(env);
}

static void test_reuse_retained_chunks(void **state)
{
  static const char *const env[] = {"PALLET_RETAIN_CHUNKS=1024", NULL};
  (void)state;
  run_child(env);
}

static void test_reuse_dirty_max_zero(void **state)
{
  static const char *const env[] = {"PALLET_DIRTY_MAX=0", "PALLET_DECAY_MS=0", NULL};
  (void)state;
  run_child(env);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reuse_after_trim),
      cmocka_unit_test(test_reuse_without_trim),
      cmocka_unit_test(test_reuse_purge_free),
      cmocka_unit_test(test_reuse_retained_chunks),
      cmocka_unit_test(test_reuse_dirty_max_zero),
  };
  if (argc > 1 && strcmp(argv[1], "child") == 0)
    return child_main();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
