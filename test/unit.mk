# test/unit.mk — CMocka unit tests of pallet's internals (included from
# test/local.mk).  Each links libpallet_core.la, whose hidden-visibility
# internals a static convenience library exposes, and includes the
# internal headers from src/.

if HAVE_CMOCKA
PL_UNIT_TESTS = \
	test/unit_sizeclass test/unit_span test/unit_chunk \
	test/unit_central test/unit_tcache test/unit_options test/unit_os
check_PROGRAMS += $(PL_UNIT_TESTS)
TESTS += $(PL_UNIT_TESTS)

test_unit_sizeclass_SOURCES = test/unit_sizeclass.c
test_unit_sizeclass_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_sizeclass_LDADD = $(PL_UNIT_LIBS)

test_unit_span_SOURCES = test/unit_span.c test/testutil.h
test_unit_span_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_span_LDADD = $(PL_UNIT_LIBS)

test_unit_chunk_SOURCES = test/unit_chunk.c
test_unit_chunk_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_chunk_LDADD = $(PL_UNIT_LIBS)

test_unit_central_SOURCES = test/unit_central.c test/testutil.h
test_unit_central_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_central_LDADD = $(PL_UNIT_LIBS)

test_unit_tcache_SOURCES = test/unit_tcache.c test/testutil.h
test_unit_tcache_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_tcache_LDADD = $(PL_UNIT_LIBS)

test_unit_options_SOURCES = test/unit_options.c
test_unit_options_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_options_LDADD = $(PL_UNIT_LIBS)

test_unit_os_SOURCES = test/unit_os.c
test_unit_os_CFLAGS = $(PL_UNIT_FLAGS)
test_unit_os_LDADD = $(PL_UNIT_LIBS) -ldl
endif
