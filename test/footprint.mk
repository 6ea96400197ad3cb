# test/footprint.mk — footprint and statistics tests (included from
# test/local.mk): memory given back by malloc_trim, by the decay and by
# the background thread; flat footprint under thread churn; purged memory
# reused; exact statistics; and the effect of every PALLET_* option
# (test/options_effect.sh runs test/options_effect_prog under
# LD_PRELOAD=libpallet.so).  The RSS-based tests measure nothing useful
# under a sanitizer, so they are left out of sanitizer builds.

EXTRA_DIST += test/options_effect.sh test/no_arena.sh

if HAVE_CMOCKA
if !PL_SANITIZE
PL_FOOTPRINT_TESTS = \
	test/footprint_trim test/footprint_decay test/footprint_churn \
	test/footprint_reuse test/stats_exact
check_PROGRAMS += $(PL_FOOTPRINT_TESTS)
TESTS += $(PL_FOOTPRINT_TESTS)

PL_FOOTPRINT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
PL_FOOTPRINT_LDADD = libpallet_core.la $(CMOCKA_LIBS) $(PTHREAD_LIBS)

test_footprint_trim_SOURCES = test/footprint_trim.c test/footprint_util.h test/testutil.h
test_footprint_trim_CFLAGS = $(PL_FOOTPRINT_CFLAGS)
test_footprint_trim_LDADD = $(PL_FOOTPRINT_LDADD)

test_footprint_decay_SOURCES = test/footprint_decay.c test/footprint_util.h test/testutil.h
test_footprint_decay_CFLAGS = $(PL_FOOTPRINT_CFLAGS)
test_footprint_decay_LDADD = $(PL_FOOTPRINT_LDADD)

test_footprint_churn_SOURCES = test/footprint_churn.c test/footprint_util.h test/testutil.h
test_footprint_churn_CFLAGS = $(PL_FOOTPRINT_CFLAGS)
test_footprint_churn_LDADD = $(PL_FOOTPRINT_LDADD)

test_footprint_reuse_SOURCES = test/footprint_reuse.c test/footprint_util.h test/testutil.h
test_footprint_reuse_CFLAGS = $(PL_FOOTPRINT_CFLAGS)
test_footprint_reuse_LDADD = $(PL_FOOTPRINT_LDADD)

test_stats_exact_SOURCES = test/stats_exact.c test/footprint_util.h test/testutil.h
test_stats_exact_CFLAGS = $(PL_FOOTPRINT_CFLAGS)
test_stats_exact_LDADD = $(PL_FOOTPRINT_LDADD)
endif
endif

if PL_OVERRIDE
if !PL_SANITIZE
if HAVE_CMOCKA
# The unit tests and pallet-stress again, with no heap arena (a small
# ulimit -v; sanitizers need far more address space).
TESTS += test/no_arena.sh
endif
# Plain malloc calls; pallet comes in through LD_PRELOAD.
check_PROGRAMS += test/options_effect_prog
TESTS += test/options_effect.sh
test_options_effect_prog_SOURCES = test/options_effect.c
test_options_effect_prog_LDADD = $(PTHREAD_LIBS)
AM_TESTS_ENVIRONMENT += PL_OPTIONS_PROG='$(abs_top_builddir)/test/options_effect_prog'; export PL_OPTIONS_PROG;
endif
endif
