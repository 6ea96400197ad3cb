# test/api.mk — API-contract, misuse, concurrency and real-program tests
# (included from test/local.mk).  The CMocka programs drive pallet through
# the pallet_ names and link libpallet_core (no override), so they also run
# in sanitizer builds; the link_* programs and preload_programs.sh need the
# real override (libpallet with malloc, free, ...).

# The library the preload script puts under real programs: LIBPALLET_SO,
# exported by AM_TESTS_ENVIRONMENT in Makefile.am.

EXTRA_DIST += test/testutil.h test/preload_programs.sh

if HAVE_CMOCKA
PL_API_TESTS = \
	test/api_malloc test/api_calloc test/api_realloc test/api_align \
	test/api_misuse \
	test/thread_xfree test/thread_churn test/thread_fork test/thread_exit
check_PROGRAMS += $(PL_API_TESTS)
TESTS += $(PL_API_TESTS)

PL_API_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
PL_API_LDADD = libpallet_core.la $(CMOCKA_LIBS) $(PTHREAD_LIBS)

test_api_malloc_SOURCES = test/api_malloc.c test/testutil.h
test_api_malloc_CFLAGS = $(PL_API_CFLAGS)
test_api_malloc_LDADD = $(PL_API_LDADD)

test_api_calloc_SOURCES = test/api_calloc.c test/testutil.h
test_api_calloc_CFLAGS = $(PL_API_CFLAGS)
test_api_calloc_LDADD = $(PL_API_LDADD)

test_api_realloc_SOURCES = test/api_realloc.c test/testutil.h
test_api_realloc_CFLAGS = $(PL_API_CFLAGS)
test_api_realloc_LDADD = $(PL_API_LDADD)

test_api_align_SOURCES = test/api_align.c test/testutil.h
test_api_align_CFLAGS = $(PL_API_CFLAGS)
test_api_align_LDADD = $(PL_API_LDADD)

test_api_misuse_SOURCES = test/api_misuse.c test/testutil.h
test_api_misuse_CFLAGS = $(PL_API_CFLAGS)
test_api_misuse_LDADD = $(PL_API_LDADD)

test_thread_xfree_SOURCES = test/thread_xfree.c test/testutil.h
test_thread_xfree_CFLAGS = $(PL_API_CFLAGS)
test_thread_xfree_LDADD = $(PL_API_LDADD)

test_thread_churn_SOURCES = test/thread_churn.c test/testutil.h
test_thread_churn_CFLAGS = $(PL_API_CFLAGS)
test_thread_churn_LDADD = $(PL_API_LDADD)

test_thread_fork_SOURCES = test/thread_fork.c test/testutil.h
test_thread_fork_CFLAGS = $(PL_API_CFLAGS)
test_thread_fork_LDADD = $(PL_API_LDADD)

test_thread_exit_SOURCES = test/thread_exit.c test/testutil.h
test_thread_exit_CFLAGS = $(PL_API_CFLAGS)
test_thread_exit_LDADD = $(PL_API_LDADD)
endif

if PL_OVERRIDE
if !PL_SANITIZE
# The same program linked three ways: with the shared libpallet, with
# libpallet.a into a dynamic program, and fully static (libc.a: the link
# fails if libpallet.a misses a symbol of glibc's malloc object).
PL_LINK_TESTS = test/link_shared test/link_static test/link_allstatic
check_PROGRAMS += $(PL_LINK_TESTS)
TESTS += $(PL_LINK_TESTS) test/preload_programs.sh

test_link_shared_SOURCES = test/link_override.c
test_link_shared_CPPFLAGS = $(AM_CPPFLAGS) -DPL_TEST_OLD_CFREE
test_link_shared_LDADD = libpallet.la $(PTHREAD_LIBS)

test_link_static_SOURCES = test/link_override.c
test_link_static_LDFLAGS = $(AM_LDFLAGS) -static
test_link_static_LDADD = libpallet.la $(PTHREAD_LIBS)

test_link_allstatic_SOURCES = test/link_override.c
test_link_allstatic_LDFLAGS = $(AM_LDFLAGS) -all-static
test_link_allstatic_LDADD = libpallet.la $(PTHREAD_LIBS)

# C++'s operators new and delete, from the shared libpallet.
if HAVE_CMOCKA
if HAVE_CXX17
check_PROGRAMS += test/api_cxx
TESTS += test/api_cxx
test_api_cxx_SOURCES = test/api_cxx.cc test/testutil.h
test_api_cxx_CXXFLAGS = $(PL_CXXFLAGS) $(CMOCKA_CFLAGS)
test_api_cxx_LDADD = libpallet.la $(CMOCKA_LIBS) $(PTHREAD_LIBS) -ldl

# A C program that dlopen()s a C++ library (the runtime arrives late).
check_PROGRAMS += test/api_cxx_dlopen
TESTS += test/api_cxx_dlopen
check_LTLIBRARIES += test/cxx_plugin.la
test_cxx_plugin_la_SOURCES = test/cxx_plugin.cc
test_cxx_plugin_la_CXXFLAGS = $(PL_CXXFLAGS)
test_cxx_plugin_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
test_api_cxx_dlopen_SOURCES = test/api_cxx_dlopen.c test/testutil.h
test_api_cxx_dlopen_CFLAGS = $(PL_API_CFLAGS)
test_api_cxx_dlopen_LDADD = libpallet.la $(CMOCKA_LIBS) $(PTHREAD_LIBS) -ldl
endif
endif

# libpallet.so loaded with dlopen() (the program's malloc stays glibc's).
check_PROGRAMS += test/link_dlopen
TESTS += test/link_dlopen.sh
EXTRA_DIST += test/link_dlopen.sh
test_link_dlopen_SOURCES = test/link_dlopen.c
test_link_dlopen_LDADD = $(PTHREAD_LIBS) -ldl
endif
endif
