# test/local.mk — the test suite (run by make check).
# Unit tests of the internals link libpallet_core (no standard names), so
# they also run under the sanitizers; API/thread/preload tests: test/api.mk.
PL_UNIT_LIBS = libpallet_core.la $(CMOCKA_LIBS) $(PTHREAD_LIBS)
PL_UNIT_FLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)

EXTRA_DIST += test/statm.h

include test/api.mk
include test/unit.mk
include test/fuzz.mk
include test/heapmap.mk
include test/footprint.mk
