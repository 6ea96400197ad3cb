/*
 * testutil.h — helpers shared by pallet's API-contract, misuse and thread
 * tests (test/api_*.c, test/thread_*.c).
 *
 *  - tu_watchdog(): an alarm that kills a test that hangs, with a message;
 *  - tu_expect_abort(): a death test: runs a function in a forked child
 *    with its stderr captured through a pipe and asserts that the child
 *    died of SIGABRT and that what it printed names the expected error;
 *  - tu_expect_clean_exit(): the same, for code that must NOT abort;
 *  - tu_fill()/tu_check(): a per-block byte pattern, to catch overlapping
 *    or corrupted blocks;
 *  - tu_rss_bytes(): the process's resident set from /proc/self/statm;
 *  - tu_opaque(): hides a constant from the compiler (so that it neither
 *    folds nor warns about, e.g., malloc(SIZE_MAX)).
 *
 * Everything is static: each test is one translation unit.
 */
#ifndef PALLET_TESTUTIL_H
#define PALLET_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include "statm.h"
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __cplusplus /* (cmocka.h declares its functions without extern "C") */
extern "C" {
#endif
#include <cmocka.h>
#ifdef __cplusplus
}
#endif

#include "pallet.h"

/* Whether this code is built with AddressSanitizer (gcc or clang). */
#if defined(__SANITIZE_ADDRESS__)
#define TU_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_UNDER_ASAN 1
#endif
#endif
#ifndef TU_UNDER_ASAN
#define TU_UNDER_ASAN 0
#endif

/* Helpers a given test may not use. */
#define TU_FN static __attribute__((unused))

/* In a death-test child, cmocka's assertions must not be used (a failure
 * would longjmp back into the test runner inside the child): report and
 * leave with status 3 instead. */
#define TU_CHILD_REQUIRE(cond)                                              \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "child check failed at %s:%d: %s\n", __FILE__,         \
              __LINE__, #cond);                                             \
      _exit(3);                                                             \
    }                                                                       \
  } while (0)

/* ---- watchdog ------------------------------------------------------- */

static const char *tu_watchdog_name __attribute__((unused)) = "test";

TU_FN void tu_watchdog_fire(int sig)
{
  static const char msg[] = "watchdog: time limit exceeded, test hung: ";
  (void)sig;
  if (write(2, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
  if (write(2, tu_watchdog_name, strlen(tu_watchdog_name)) < 0) { }
  if (write(2, "\n", 1) < 0) { }
  signal(SIGALRM, SIG_DFL);
  raise(SIGALRM);
  _exit(124);
}

/* Arms (or re-arms) a watchdog of `seconds` for the calling process;
 * 0 disarms it.  The scale can be raised through PL_TEST_TIMEOUT_SCALE
 * (e.g. 4 under valgrind). */
TU_FN void tu_watchdog(const char *name, unsigned seconds)
{
  const char *scale = getenv("PL_TEST_TIMEOUT_SCALE");
  if (scale != NULL && atoi(scale) > 1)
    seconds *= (unsigned)atoi(scale);
  tu_watchdog_name = name;
  signal(SIGALRM, tu_watchdog_fire);
  alarm(seconds);
}

/* ---- small helpers -------------------------------------------------- */

static inline size_t tu_opaque(size_t x)
{
  volatile size_t v = x;
  return v;
}

static inline int tu_is_aligned(const void *p, size_t alignment)
{
  return ((uintptr_t)p & (alignment - 1)) == 0;
}

static inline size_t tu_page_size(void)
{
  return (size_t)sysconf(_SC_PAGESIZE);
}

/* The pattern of block `seed`, word wi: depends on both, so two blocks
 * that overlap or a block copied to the wrong place show up. */
static inline uint64_t tu_pattern_word(uint64_t seed, size_t wi)
{
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)wi * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x;
}

/* Fills n bytes at p with the pattern of `seed` (word-wise: p must be
 * 8-byte aligned, which every pallet block is). */
TU_FN void tu_fill(void *p, size_t n, uint64_t seed)
{
  uint64_t *w = (uint64_t *)p;
  size_t nw = n / 8, i;
  for (i = 0; i < nw; i++)
    w[i] = tu_pattern_word(seed, i);
  for (i = nw * 8; i < n; i++)
    ((unsigned char *)p)[i] = (unsigned char)(tu_pattern_word(seed, nw) >> ((i & 7) * 8));
}

/* Returns the first offset < n where p differs from the pattern of
 * `seed`, or (size_t)-1 when all n bytes match. */
TU_FN size_t tu_check(const void *p, size_t n, uint64_t seed)
{
  const uint64_t *w = (const uint64_t *)p;
  size_t nw = n / 8, i;
  for (i = 0; i < nw; i++)
    if (w[i] != tu_pattern_word(seed, i)) {
      size_t b;
      uint64_t want = tu_pattern_word(seed, i);
      for (b = 0; b < 8; b++)
        if (((const unsigned char *)p)[i * 8 + b] != (unsigned char)(want >> (b * 8)))
          return i * 8 + b;
    }
  for (i = nw * 8; i < n; i++)
    if (((const unsigned char *)p)[i] != (unsigned char)(tu_pattern_word(seed, nw) >> ((i & 7) * 8)))
      return i;
  return (size_t)-1;
}

/* Returns the first offset < n holding a non-zero byte, or (size_t)-1. */
TU_FN size_t tu_first_nonzero(const void *p, size_t n)
{
  const unsigned char *c = (const unsigned char *)p;
  size_t i = 0;
  while (i < n && ((uintptr_t)(c + i) & 7) != 0) {
    if (c[i] != 0) return i;
    i++;
  }
  for (; i + 8 <= n; i += 8)
    if (*(const uint64_t *)(const void *)(c + i) != 0)
      break;
  for (; i < n; i++)
    if (c[i] != 0) return i;
  return (size_t)-1;
}

/* Resident set of this process in bytes (from /proc/self/statm). */
TU_FN size_t tu_rss_bytes(void)
{
  return statm_bytes(1);
}

/* ---- death tests ---------------------------------------------------- */

typedef void (*tu_child_fn)(void *arg);

struct tu_child_result {
  int status;          /* from waitpid */
  char err[8192];      /* the child's stderr (truncated, NUL-terminated) */
};

/* Runs fn(arg) in a forked child whose stderr goes into a pipe that the
 * parent drains; the child has `seconds` to finish.  If fn returns, the
 * child exits with status 0. */
TU_FN void tu_run_child(tu_child_fn fn, void *arg, unsigned seconds,
                         struct tu_child_result *res)
{
  int fds[2];
  pid_t pid;
  size_t len = 0;

  memset(res, 0, sizeof *res);
  fflush(NULL);
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The child: default signal dispositions (cmocka catches SIGSEGV and
     * friends in the parent), no core files, stderr into the pipe. */
    static const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS };
    struct rlimit no_core = { 0, 0 };
    size_t i;
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
      signal(sigs[i], SIG_DFL);
    setrlimit(RLIMIT_CORE, &no_core);
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    tu_watchdog("child of a death test", seconds);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  for (;;) {
    ssize_t r;
    char sink[512];
    if (len < sizeof res->err - 1)
      r = read(fds[0], res->err + len, sizeof res->err - 1 - len);
    else
      r = read(fds[0], sink, sizeof sink);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (len < sizeof res->err - 1)
      len += (size_t)r;
  }
  res->err[len] = '\0';
  close(fds[0]);
  while (waitpid(pid, &res->status, 0) < 0)
    assert_int_equal(errno, EINTR);
}

TU_FN void tu_describe_status(int status, char *buf, size_t n)
{
  if (WIFEXITED(status))
    snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(buf, n, "wait status 0x%x", status);
}

/* Asserts that fn(arg), run in a child, dies of SIGABRT after writing to
 * stderr a line that contains "pallet: " followed (on the same line) by
 * one of the NULL-terminated alternatives in `expect`. */
TU_FN void tu_expect_abort_any(const char *what, tu_child_fn fn, void *arg,
                                const char *const *expect)
{
  struct tu_child_result res;
  char how[128];
  const char *line;
  int found = 0;

  tu_run_child(fn, arg, 20, &res);
  tu_describe_status(res.status, how, sizeof how);
  for (line = strstr(res.err, "pallet: "); line != NULL && !found;
       line = strstr(line + 1, "pallet: ")) {
    const char *eol = strchr(line, '\n');
    const char *const *e;
    for (e = expect; *e != NULL; e++) {
      const char *hit = strstr(line, *e);
      if (hit != NULL && (eol == NULL || hit < eol))
        found = 1;
    }
  }
  if (!(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT) || !found) {
    print_error("death test '%s': expected SIGABRT and a message \"pallet: ...%s\";\n"
                "  the child %s and wrote to stderr:\n%s\n",
                what, expect[0], how, res.err[0] ? res.err : "(nothing)");
    fail_msg("death test '%s' failed", what);
  }
}

TU_FN void tu_expect_abort(const char *what, tu_child_fn fn, void *arg,
                            const char *expect)
{
  const char *alts[2];
  alts[0] = expect;
  alts[1] = NULL;
  tu_expect_abort_any(what, fn, arg, alts);
}

/* Asserts that fn(arg), run in a child, returns normally (exit status 0)
 * and writes nothing that mentions pallet to stderr. */
TU_FN void tu_expect_clean_exit(const char *what, tu_child_fn fn, void *arg)
{
  struct tu_child_result res;
  char how[128];

  tu_run_child(fn, arg, 30, &res);
  tu_describe_status(res.status, how, sizeof how);
  if (!(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0) ||
      strstr(res.err, "pallet: ") != NULL) {
    print_error("'%s' must run cleanly; the child %s and wrote:\n%s\n", what,
                how, res.err[0] ? res.err : "(nothing)");
    fail_msg("'%s' did not run cleanly", what);
  }
}

#endif /* PALLET_TESTUTIL_H */
