/*
 * thread_fork.c — fork() while four threads allocate and free through the
 * pallet_ API.  Each child allocates and frees a mix (small, large, huge,
 * and from a new thread of its own), checks the heap and exits 0; a lock
 * held at the moment of fork would make it hang, which its watchdog turns
 * into a failure.  The parent checks every child's status.
 */
#include "testutil.h"

#include <pthread.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

enum { WORKERS = 4, FORKS = 60 };

static int stop; /* set by main, read by the workers (atomically) */

static void *busy(void *arg)
{
  uint64_t s = (uint64_t)(uintptr_t)arg * 31 + 7;
  void *keep[64] = { NULL };
  unsigned long i;
  for (i = 0; !__atomic_load_n(&stop, __ATOMIC_RELAXED); i++) {
    unsigned k = (unsigned)(i % 64);
    size_t n;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    n = (s % 8 == 0) ? (size_t)(s >> 8) % (512 * KIB) + 1 : (size_t)(s >> 8) % 1024;
    if (i % 997 == 0)
      n = 5 * MIB; /* huge ones too: the OS layer's locks */
    pallet_free(keep[k]);
    keep[k] = pallet_malloc(n);
    if (keep[k] == NULL)
      abort();
    memset(keep[k], (int)k, n < 256 ? n : 256);
  }
  for (i = 0; i < 64; i++)
    pallet_free(keep[i]);
  return NULL;
}

static void *child_thread(void *arg)
{
  void *p[100];
  int i;
  (void)arg;
  for (i = 0; i < 100; i++) {
    p[i] = pallet_malloc((size_t)i * 33 + 1);
    if (p[i] == NULL)
      _exit(5);
  }
  for (i = 0; i < 100; i++)
    pallet_free(p[i]);
  return NULL;
}

static void child_work(int round)
{
  void *p[200];
  pthread_t t;
  int i;
  for (i = 0; i < 200; i++) {
    size_t n = (size_t)(i * 131 + round) % 3000 + 1;
    if (i % 50 == 0)
      n = 700 * KIB;
    if (i == 199)
      n = 9 * MIB;
    p[i] = pallet_malloc(n);
    if (p[i] == NULL)
      _exit(2);
    tu_fill(p[i], n, (uint64_t)i);
    if (tu_check(p[i], n, (uint64_t)i) != (size_t)-1)
      _exit(3);
  }
  for (i = 0; i < 200; i++)
    pallet_free(p[i]);
  /* a thread in the child: thread set-up after fork works */
  if (pthread_create(&t, NULL, child_thread, NULL) != 0)
    _exit(6);
  pthread_join(t, NULL);
  if (pallet_heap_check() != 0)
    _exit(4);
}

static void test_fork_while_allocating(void **state)
{
  pthread_t t[WORKERS];
  int i, failures = 0;
  (void)state;
  for (i = 0; i < WORKERS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, busy, (void *)(uintptr_t)(i + 1)), 0);
  usleep(20000);
  for (i = 0; i < FORKS; i++) {
    pid_t pid;
    int status;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      alarm(0);
      tu_watchdog("forked child (deadlock after fork?)", 20);
      child_work(i);
      _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0)
      assert_int_equal(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      char how[128];
      tu_describe_status(status, how, sizeof how);
      print_error("fork %d: the child %s\n", i, how);
      failures++;
    }
    usleep(2000);
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  for (i = 0; i < WORKERS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(failures, 0);
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fork_while_allocating),
  };
  tu_watchdog("thread_fork", 120);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
