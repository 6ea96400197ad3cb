/*
 * unit_os.c — unit tests of os.c's lookup of symbols among the loaded
 * objects (pl_os_find_symbol, used by a failed C++ new to find the C++
 * runtime when it was loaded after libpallet): it finds what the dynamic
 * linker finds for ordinary functions and objects of libc and libcmocka,
 * by their GNU hash tables, in the default version where a library
 * keeps old ones; NULL for names nobody defines (including near misses
 * of a real name) and for ifunc symbols (memcpy, whose value is its
 * resolver's); and it leaves errno alone.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "os.h"

static void test_finds_what_the_linker_finds(void **state) {
  (void)state;
  /* Functions and an object of libc, and a function of libcmocka; and
   * two functions that glibc also keeps under an old version for old
   * binaries (realpath@GLIBC_2.2.5 beside realpath@@GLIBC_2.3,
   * pthread_cond_wait@GLIBC_2.2.5 beside @@GLIBC_2.3.2): the lookup must
   * give the default version, as the dynamic linker does. */
  const char *names[] = {"printf", "qsort", "getenv", "strtoull", "environ",
                         "_cmocka_run_group_tests", "realpath", "pthread_cond_wait"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *want = dlsym(RTLD_DEFAULT, names[i]);
    assert_non_null(want);
    void *got = pl_os_find_symbol(names[i]);
    if (got != want) fail_msg("%s: found %p, the dynamic linker %p", names[i], got, want);
  }
}

static void test_absent_names(void **state) {
  (void)state;
  assert_null(pl_os_find_symbol("pl_no_object_defines_this_name"));
  assert_null(pl_os_find_symbol("printf_"));  /* near misses */
  assert_null(pl_os_find_symbol("printF"));
  assert_null(pl_os_find_symbol("print"));
  assert_null(pl_os_find_symbol(""));
}

static void test_skips_ifuncs(void **state) {
  (void)state;
  /* glibc's memcpy is an ifunc on x86-64: its symbol's value is the
   * resolver, which a caller must not take for memcpy (nor its old
   * version, memcpy@GLIBC_2.2.5, which is not an ifunc). */
  void *f = pl_os_find_symbol("memcpy");
  assert_true(f == NULL || f == dlsym(RTLD_DEFAULT, "memcpy"));
}

static void test_keeps_errno(void **state) {
  (void)state;
  errno = 1234;
  (void)pl_os_find_symbol("printf");
  (void)pl_os_find_symbol("pl_no_object_defines_this_name");
  assert_int_equal(errno, 1234);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_finds_what_the_linker_finds),
      cmocka_unit_test(test_absent_names),
      cmocka_unit_test(test_skips_ifuncs),
      cmocka_unit_test(test_keeps_errno),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
