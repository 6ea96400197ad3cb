/*
 * api_cxx.cc — C++'s replaceable operators new and delete, as libpallet
 * (the override build) defines them: every form resolves to libpallet,
 * new returns pallet's blocks (aligned as asked), a failed new calls the
 * new-handler and then throws std::bad_alloc (the nothrow forms return
 * nullptr), every form of delete gives the block back, and a misused
 * delete stops the program with free()'s message.  Linked against the
 * shared libpallet, so that dladdr() can name the object each operator
 * comes from.
 */
#include <dlfcn.h>

#include <cstddef>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "testutil.h"

#include "config.h"

/* A request no allocator can meet (above PTRDIFF_MAX). */
static std::size_t huge_request() { return tu_opaque((std::size_t)1 << 62); }

/* p, in a way the compiler cannot follow: it may otherwise drop a new
 * and delete pair it can see whole, or warn about a second delete. */
template <typename T> static T *hide(T *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}

/* The object that defines the function at address f. */
static bool from_libpallet(void *f) {
  Dl_info di;
  return dladdr(f, &di) != 0 && di.dli_fname != NULL && strstr(di.dli_fname, "libpallet") != NULL;
}

/* Whether operator new or delete, in the form whose type is F, comes from
 * libpallet: the plain and the array operator.  (static_cast picks the
 * overload.) */
template <typename F> static void check_form(F plain, F array, const char *form) {
  if (!from_libpallet((void *)plain)) fail_msg("operator %s does not come from libpallet", form);
  if (!from_libpallet((void *)array)) fail_msg("operator[] %s does not come from libpallet", form);
}
#define CHECK_NEW(...)                                                           \
  check_form(static_cast<void *(*)(__VA_ARGS__)>(&::operator new),              \
             static_cast<void *(*)(__VA_ARGS__)>(&::operator new[]), "new(" #__VA_ARGS__ ")")
#define CHECK_DELETE(...)                                                        \
  check_form(static_cast<void (*)(__VA_ARGS__)>(&::operator delete),            \
             static_cast<void (*)(__VA_ARGS__)>(&::operator delete[]), "delete(" #__VA_ARGS__ ")")

static void test_operators_resolve_to_pallet(void **state) {
  (void)state;
  /* All twenty: four forms of new, six of delete, plain and array. */
  CHECK_NEW(std::size_t);
  CHECK_NEW(std::size_t, const std::nothrow_t &);
  CHECK_NEW(std::size_t, std::align_val_t);
  CHECK_NEW(std::size_t, std::align_val_t, const std::nothrow_t &);
  CHECK_DELETE(void *);
  CHECK_DELETE(void *, std::size_t);
  CHECK_DELETE(void *, const std::nothrow_t &);
  CHECK_DELETE(void *, std::align_val_t);
  CHECK_DELETE(void *, std::size_t, std::align_val_t);
  CHECK_DELETE(void *, std::align_val_t, const std::nothrow_t &);
  /* The control: a C++ runtime function that pallet does not define. */
  assert_false(from_libpallet((void *)&std::get_new_handler));
}

static void test_new_gives_pallet_blocks(void **state) {
  (void)state;
  /* new(0): distinct, usable blocks. */
  void *a = ::operator new(0), *b = ::operator new(0);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  ::operator delete(a);
  ::operator delete(b);
  const std::size_t sizes[] = {1, 24, 100, 1000, 5000, 40000, 300000, 5u << 20};
  for (std::size_t n : sizes) {
    char *p = static_cast<char *>(::operator new(n));
    char *q = static_cast<char *>(::operator new[](n));
    assert_true(tu_is_aligned(p, 16) && tu_is_aligned(q, 16));
    /* Blocks pallet handed out: its usable size, pallet's checks. */
    assert_true(pallet_malloc_usable_size(p) >= n);
    assert_true(pallet_malloc_usable_size(q) >= n);
    tu_fill(p, n, n);
    tu_fill(q, n, n + 1);
    assert_int_equal(tu_check(p, n, n), (std::size_t)-1);
    assert_int_equal(tu_check(q, n, n + 1), (std::size_t)-1);
    ::operator delete(p, n);
    ::operator delete[](q);
  }
  assert_int_equal(pallet_heap_check(), 0);
}

static void test_aligned_new(void **state) {
  (void)state;
  for (std::size_t a = 32; a <= ((std::size_t)1 << 16); a <<= 1) {
    const std::size_t sizes[] = {0, 1, a - 1, a, 3 * a + 5, 100000};
    for (std::size_t n : sizes) {
      void *p = ::operator new(n, std::align_val_t(a));
      void *q = ::operator new[](n, std::align_val_t(a), std::nothrow);
      assert_non_null(q);
      assert_ptr_not_equal(p, q); /* also for n = 0: distinct blocks */
      if (!tu_is_aligned(p, a) || !tu_is_aligned(q, a)) fail_msg("new(%zu, align %zu) misaligned", n, a);
      assert_true(pallet_malloc_usable_size(p) >= n);
      tu_fill(p, n, a);
      assert_int_equal(tu_check(p, n, a), (std::size_t)-1);
      ::operator delete(p, n, std::align_val_t(a));
      ::operator delete[](q, std::align_val_t(a), std::nothrow);
    }
  }
  assert_int_equal(pallet_heap_check(), 0);
}

/* Whether new(n) (or new[](n) aligned to a, if a) throws std::bad_alloc. */
static bool new_throws(std::size_t n, std::size_t a = 0) {
  try {
    void *p = a ? ::operator new[](n, std::align_val_t(a)) : ::operator new(n);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    return true;
  }
  return false;
}

static int handler_calls;
static void counting_handler() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}

static void test_failed_new(void **state) {
  (void)state;
  std::size_t n = huge_request();
  /* No handler: std::bad_alloc, through pallet's C frames. */
  std::set_new_handler(nullptr);
  assert_true(new_throws(n));
  assert_true(new_throws(n, 64));
  /* The nothrow forms. */
  assert_null(::operator new(n, std::nothrow));
  assert_null(::operator new[](n, std::nothrow));
  assert_null(::operator new(n, std::align_val_t(4096), std::nothrow));
  /* A handler is called until it goes away, then bad_alloc. */
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  assert_true(new_throws(n));
  assert_int_equal(handler_calls, 3);
  /* And by the nothrow forms, which then return nullptr. */
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  assert_null(::operator new[](n, std::nothrow));
  assert_int_equal(handler_calls, 3);
  assert_null(std::get_new_handler());
}

/* A handler that makes memory available: the retry after it succeeds.
 * In a child, the address space is capped just above what the process
 * maps, so that a new of 256 MiB (its own mapping) fails; the handler
 * lifts the cap. */
static void lifting_handler() {
  handler_calls++;
  struct rlimit none = {RLIM_INFINITY, RLIM_INFINITY};
  TU_CHILD_REQUIRE(setrlimit(RLIMIT_AS, &none) == 0);
}

static std::size_t vm_size_bytes() {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  TU_CHILD_REQUIRE(f != NULL && fscanf(f, "%lu", &pages) == 1);
  fclose(f);
  return pages * tu_page_size();
}

static void child_handler_makes_room(void *arg) {
  (void)arg;
  std::size_t n = (std::size_t)256 << 20;
  struct rlimit cap = {vm_size_bytes() + ((std::size_t)64 << 20), RLIM_INFINITY};
  TU_CHILD_REQUIRE(setrlimit(RLIMIT_AS, &cap) == 0);
  TU_CHILD_REQUIRE(::operator new(n, std::nothrow) == nullptr); /* no handler yet */
  handler_calls = 0;
  std::set_new_handler(lifting_handler);
  char *p = static_cast<char *>(::operator new(n));
  TU_CHILD_REQUIRE(handler_calls == 1);
  p[0] = 1;
  p[n - 1] = 2;
  ::operator delete(p, n);
  /* The same through an aligned nothrow form. */
  TU_CHILD_REQUIRE(setrlimit(RLIMIT_AS, &cap) == 0);
  std::set_new_handler(lifting_handler);
  void *q = ::operator new[](n, std::align_val_t(1 << 16), std::nothrow);
  TU_CHILD_REQUIRE(q != nullptr && tu_is_aligned(q, 1 << 16) && handler_calls == 2);
  ::operator delete[](q, std::align_val_t(1 << 16));
}

static void test_handler_retry(void **state) {
  (void)state;
  tu_expect_clean_exit("a new-handler that makes room", child_handler_makes_room, NULL);
}

/* Standard containers, checked against a plain record of what they
 * should hold. */
static void test_containers(void **state) {
  (void)state;
  enum { KEYS = 20011 };
  static int want_len[KEYS];
  std::map<int, std::string> m;
  std::vector<std::vector<long>> vv;
  for (int i = 0; i < 20000; i++) {
    int k = (int)((long)i * 7919 % KEYS);
    m[k] = std::string(16 + i % 200, char('a' + k % 26));
    want_len[k] = 16 + i % 200;
    if (i % 3 == 0) {
      int e = (int)((long)i * 31 % KEYS);
      m.erase(e);
      want_len[e] = 0;
    }
    vv.emplace_back(std::size_t(i % 300), long(i));
    if (vv.size() > 500) vv.erase(vv.begin(), vv.begin() + 250);
  }
  std::size_t present = 0;
  for (int k = 0; k < KEYS; k++) present += want_len[k] != 0;
  assert_int_equal(m.size(), present);
  for (const auto &kv : m) {
    assert_int_equal(kv.second.size(), want_len[kv.first]);
    assert_int_equal(kv.second.find_first_not_of(char('a' + kv.first % 26)), std::string::npos);
  }
  for (const auto &v : vv)
    for (long x : v) assert_int_equal(x, v.empty() ? 0 : v[0]);
  m.clear();
  vv.clear();
  vv.shrink_to_fit();
  assert_int_equal(pallet_heap_check(), 0);
}

static void child_delete_twice(void *arg) {
  std::size_t n = *static_cast<std::size_t *>(arg);
  char *p = hide(new char[n]), *again = hide(p);
  delete[] p;
  delete[] again;
}

static void child_delete_interior(void *arg) {
  std::size_t n = *static_cast<std::size_t *>(arg);
  long *p = hide(static_cast<long *>(::operator new(n)));
  ::operator delete(p + tu_opaque(2), n);
}

static void child_delete_stack(void *arg) {
  (void)arg;
  long local[4] = {0, 1, 2, 3};
  ::operator delete(tu_opaque(1) ? static_cast<void *>(local) : nullptr);
}

static void test_misused_delete(void **state) {
  (void)state;
  /* Small, medium and big classes, a large block (a span of its own) and
   * a huge one (its own mapping).  A --disable-hardening build checks
   * only the last two (and foreign pointers): its fast paths for small
   * blocks (up to 256 KiB) have no block-start or double-free check. */
  const std::size_t sizes[] = {48, 3000, 100000, 300000, 8u << 20};
  for (std::size_t n : sizes) {
    if (!PL_HARDENING && n <= ((std::size_t)256 << 10)) continue;
    tu_expect_abort("delete[] twice", child_delete_twice, &n, "free(): double free");
    tu_expect_abort("delete of an interior pointer", child_delete_interior, &n, "free(): invalid pointer");
  }
  tu_expect_abort("delete of a stack address", child_delete_stack, NULL, "free(): invalid pointer");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operators_resolve_to_pallet),
      cmocka_unit_test(test_new_gives_pallet_blocks),
      cmocka_unit_test(test_aligned_new),
      cmocka_unit_test(test_failed_new),
      cmocka_unit_test(test_handler_retry),
      cmocka_unit_test(test_containers),
      cmocka_unit_test(test_misused_delete),
  };
  tu_watchdog("api_cxx", 120);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
