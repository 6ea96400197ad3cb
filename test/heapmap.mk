# test/heapmap.mk — pallet_heap_map (src/heapmap.c): its unit test, run by
# make check, and bench/heapmap-demo, built by make and run by hand to draw
# the pictures of doc/heapmap.md (included from test/local.mk).

if HAVE_CMOCKA
check_PROGRAMS += test/unit_heapmap
TESTS += test/unit_heapmap
test_unit_heapmap_SOURCES = test/unit_heapmap.c test/testutil.h
test_unit_heapmap_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_heapmap_LDADD = $(PL_UNIT_LIBS)
endif

# The demo goes through malloc/free, so it links the library with the
# standard names (it says so and stops when they are not pallet's).
noinst_PROGRAMS += bench/heapmap-demo
bench_heapmap_demo_SOURCES = bench/heapmap-demo.c
bench_heapmap_demo_CFLAGS = $(AM_CFLAGS) -fno-builtin-malloc -fno-builtin-free
bench_heapmap_demo_LDADD = libpallet.la $(PTHREAD_LIBS)

EXTRA_DIST += doc/heapmap.md doc/img/heap-before.svg doc/img/heap-after.svg \
	doc/img/heap-trimmed.svg
