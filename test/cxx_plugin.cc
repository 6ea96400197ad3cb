/*
 * cxx_plugin.cc — a C++ library for test/api_cxx_dlopen.c to dlopen()
 * from a C program, which had no C++ runtime until then (as when
 * Python imports a C++ extension).  Its new and delete are libpallet's.
 */
#include <cstddef>
#include <new>

static int calls;
static void handler() {
  if (++calls == 2) std::set_new_handler(nullptr);
}

/* A new that cannot succeed: the number of times the new-handler ran
 * before std::bad_alloc was caught here, or -1 if nothing was thrown. */
extern "C" int plugin_failed_new(void) {
  calls = 0;
  std::set_new_handler(handler);
  try {
    void *p = ::operator new((std::size_t)1 << 62);
    ::operator delete(p);
    return -1;
  } catch (const std::bad_alloc &) {
    return calls;
  }
}

/* The same through the nothrow form: 1 if it returned null after the
 * handler ran twice. */
extern "C" int plugin_failed_new_nothrow(void) {
  calls = 0;
  std::set_new_handler(handler);
  void *p = ::operator new[]((std::size_t)1 << 62, std::nothrow);
  return p == nullptr && calls == 2;
}

/* operator new as this library's calls reach it. */
extern "C" void *plugin_operator_new(void) {
  return reinterpret_cast<void *>(static_cast<void *(*)(std::size_t)>(&::operator new));
}

/* A new and delete that work: the value stored and read back. */
extern "C" int plugin_new_delete(int v) {
  int *a = new int[100];
  a[99] = v;
  int r = a[99];
  delete[] a;
  return r;
}
