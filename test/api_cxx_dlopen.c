/*
 * api_cxx_dlopen.c — a C program, linked with libpallet, that dlopen()s a
 * C++ library (test/cxx_plugin.cc) after start-up, so that the C++
 * runtime arrives after libpallet's weak references to it were resolved
 * (to nothing).  A failed operator new in that library must still call
 * its new-handler and throw std::bad_alloc, found among the objects
 * loaded by then (src/os.c, pl_os_find_symbol), not abort.  The library's
 * path comes in TEST_CXX_PLUGIN (test/api.mk).
 */
#include "testutil.h"

#include <dlfcn.h>

static void *plugin(void) {
  const char *path = getenv("TEST_CXX_PLUGIN");
  if (path == NULL) fail_msg("TEST_CXX_PLUGIN is not set");
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) fail_msg("dlopen %s: %s", path, dlerror());
  return h;
}

static void test_runtime_arrives_late(void **state) {
  (void)state;
  /* The scenario: no C++ runtime in the process before the dlopen. */
  assert_null(dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD));
  void *h = plugin();
  assert_non_null(dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD));
  /* Its new is libpallet's (the global scope comes first). */
  void *(*op)(void) = (void *(*)(void))dlsym(h, "plugin_operator_new");
  assert_non_null(op);
  Dl_info di;
  assert_true(dladdr(op(), &di) != 0 && di.dli_fname != NULL);
  assert_non_null(strstr(di.dli_fname, "libpallet"));
  int (*new_delete)(int) = (int (*)(int))dlsym(h, "plugin_new_delete");
  int (*failed)(void) = (int (*)(void))dlsym(h, "plugin_failed_new");
  int (*failed_nothrow)(void) = (int (*)(void))dlsym(h, "plugin_failed_new_nothrow");
  assert_non_null(new_delete);
  assert_non_null(failed);
  assert_non_null(failed_nothrow);
  assert_int_equal(new_delete(1234), 1234);
  /* The handler ran twice, then bad_alloc was thrown and caught. */
  assert_int_equal(failed(), 2);
  assert_int_equal(failed_nothrow(), 1);
  assert_int_equal(pallet_heap_check(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runtime_arrives_late),
  };
  tu_watchdog("api_cxx_dlopen", 60);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
