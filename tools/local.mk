# tools/local.mk — rules for tools/: the stress-test harness.
#   pallet-stress      hammers whatever malloc it runs with (LD_PRELOAD)
#   pallet-stress-api  the same source on pallet's pallet_ API, linked
#                      statically: the one sanitizer builds drive
#   tools/corrupt-shim.la  a malloc shim that corrupts blocks on purpose,
#                      so that tools/test-stress.sh can show the harness
#                      catches it (built for make check only)
# See doc/stress.md.

bin_PROGRAMS += tools/pallet-stress tools/pallet-stress-api

tools_pallet_stress_SOURCES = tools/pallet-stress.c
tools_pallet_stress_LDADD = $(PTHREAD_LIBS) -lm

tools_pallet_stress_api_SOURCES = tools/pallet-stress.c
tools_pallet_stress_api_CPPFLAGS = $(AM_CPPFLAGS) -DSTRESS_PALLET_API
tools_pallet_stress_api_LDADD = libpallet_core.la $(PTHREAD_LIBS) -lm

# A shared object only for LD_PRELOAD in the tests: -rpath makes libtool
# build it shared although it is never installed.
check_LTLIBRARIES += tools/corrupt-shim.la
tools_corrupt_shim_la_SOURCES = tools/corrupt-shim.c
tools_corrupt_shim_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
tools_corrupt_shim_la_LIBADD = $(PTHREAD_LIBS)

dist_check_SCRIPTS = tools/test-stress.sh
TESTS += tools/test-stress.sh
EXTRA_DIST += doc/stress.md

if PL_SANITIZE
STRESS_SANITIZED = yes
else
STRESS_SANITIZED = no
endif
if PL_OVERRIDE
STRESS_OVERRIDE = yes
else
STRESS_OVERRIDE = no
endif

# Where tools/test-stress.sh finds what it runs (VPATH-safe: all absolute;
# LIBPALLET_SO comes from Makefile.am).
AM_TESTS_ENVIRONMENT += \
	STRESS_BIN='$(abs_top_builddir)/tools/pallet-stress$(EXEEXT)'; \
	STRESS_API_BIN='$(abs_top_builddir)/tools/pallet-stress-api$(EXEEXT)'; \
	STRESS_SHIM='$(abs_top_builddir)/tools/.libs/corrupt-shim.so'; \
	STRESS_SANITIZED='$(STRESS_SANITIZED)'; \
	STRESS_OVERRIDE='$(STRESS_OVERRIDE)'; \
	export STRESS_BIN STRESS_API_BIN STRESS_SHIM \
	  STRESS_SANITIZED STRESS_OVERRIDE;
