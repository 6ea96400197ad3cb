# bench/local.mk — rules for bench/: the benchmark programs (built with
# `make`, never run by `make check`), the bump-pointer shim used to count
# instructions, and the `make bench` / `make bench-callgrind` targets that
# drive bench/runner with the freshly built libpallet.
#
#   make bench                 full run (5 repetitions), results in
#                              $(top_srcdir)/bench/results/ (git-ignored)
#   make bench QUICK=1         quick run (2 repetitions, fewer operations)
#   make bench BENCH_ARGS=...  extra runner arguments (e.g. --only workingset)
#   make bench-callgrind       instructions per malloc+free pair
#   BENCH_RESULTS=dir          write the results somewhere else

BENCH_CFLAGS = $(AM_CFLAGS) -fno-builtin-malloc -fno-builtin-free \
	-fno-builtin-calloc -fno-builtin-realloc
BENCH_LIBS = $(PTHREAD_LIBS)

noinst_PROGRAMS += bench/bench-bands bench/bench-workingset \
	bench/bench-prodcons bench/bench-larson bench/bench-scaling \
	bench/bench-realloc bench/bench-frag bench/bench-bigblocks \
	bench/bench-footprint bench/bench-servermix bench/bench-bursts \
	bench/bench-buffers bench/bench-pipeline bench/bench-threadchurn \
	bench/bench-sharing

# C++ objects through operator new and delete (a C++17 compiler only).
if HAVE_CXX17
noinst_PROGRAMS += bench/bench-cxxobjects
bench_bench_cxxobjects_SOURCES = bench/cxxobjects.cc bench/bench.h
bench_bench_cxxobjects_CXXFLAGS = $(PL_CXXFLAGS)
bench_bench_cxxobjects_LDADD = $(BENCH_LIBS)
endif

bench_bench_bands_SOURCES = bench/bands.c bench/bench.h
bench_bench_bands_CFLAGS = $(BENCH_CFLAGS)
bench_bench_bands_LDADD = $(BENCH_LIBS)
bench_bench_workingset_SOURCES = bench/workingset.c bench/bench.h
bench_bench_workingset_CFLAGS = $(BENCH_CFLAGS)
bench_bench_workingset_LDADD = $(BENCH_LIBS)
bench_bench_prodcons_SOURCES = bench/prodcons.c bench/bench.h
bench_bench_prodcons_CFLAGS = $(BENCH_CFLAGS)
bench_bench_prodcons_LDADD = $(BENCH_LIBS)
bench_bench_pipeline_SOURCES = bench/pipeline.c bench/bench.h
bench_bench_pipeline_CFLAGS = $(BENCH_CFLAGS)
bench_bench_pipeline_LDADD = $(BENCH_LIBS)
bench_bench_larson_SOURCES = bench/larson.c bench/bench.h
bench_bench_larson_CFLAGS = $(BENCH_CFLAGS)
bench_bench_larson_LDADD = $(BENCH_LIBS)
bench_bench_scaling_SOURCES = bench/scaling.c bench/bench.h
bench_bench_scaling_CFLAGS = $(BENCH_CFLAGS)
bench_bench_scaling_LDADD = $(BENCH_LIBS)
bench_bench_realloc_SOURCES = bench/realloc.c bench/bench.h
bench_bench_realloc_CFLAGS = $(BENCH_CFLAGS)
bench_bench_realloc_LDADD = $(BENCH_LIBS)
bench_bench_bursts_SOURCES = bench/bursts.c bench/bench.h
bench_bench_bursts_CFLAGS = $(BENCH_CFLAGS)
bench_bench_bursts_LDADD = $(BENCH_LIBS)
bench_bench_buffers_SOURCES = bench/buffers.c bench/bench.h
bench_bench_buffers_CFLAGS = $(BENCH_CFLAGS)
bench_bench_buffers_LDADD = $(BENCH_LIBS)
bench_bench_footprint_SOURCES = bench/footprint.c bench/bench.h
bench_bench_footprint_CFLAGS = $(BENCH_CFLAGS)
bench_bench_footprint_LDADD = $(BENCH_LIBS)
bench_bench_frag_SOURCES = bench/frag.c bench/bench.h
bench_bench_frag_CFLAGS = $(BENCH_CFLAGS)
bench_bench_frag_LDADD = $(BENCH_LIBS)
bench_bench_bigblocks_SOURCES = bench/bigblocks.c bench/bench.h
bench_bench_bigblocks_CFLAGS = $(BENCH_CFLAGS)
bench_bench_bigblocks_LDADD = $(BENCH_LIBS)
bench_bench_servermix_SOURCES = bench/servermix.c bench/bench.h
bench_bench_servermix_CFLAGS = $(BENCH_CFLAGS)
bench_bench_servermix_LDADD = $(BENCH_LIBS)
bench_bench_threadchurn_SOURCES = bench/threadchurn.c bench/bench.h
bench_bench_threadchurn_CFLAGS = $(BENCH_CFLAGS)
bench_bench_threadchurn_LDADD = $(BENCH_LIBS)
bench_bench_sharing_SOURCES = bench/sharing.c bench/bench.h
bench_bench_sharing_CFLAGS = $(BENCH_CFLAGS)
bench_bench_sharing_LDADD = $(BENCH_LIBS)

# The do-nothing allocator for `runner --callgrind`: a shared module
# (bench/.libs/bumpalloc.so), never installed; -rpath makes libtool build
# a real shared object instead of a convenience archive.
noinst_LTLIBRARIES += bench/bumpalloc.la
bench_bumpalloc_la_SOURCES = bench/bumpalloc.c
bench_bumpalloc_la_CFLAGS = $(BENCH_CFLAGS) -fvisibility=hidden
bench_bumpalloc_la_LDFLAGS = -module -avoid-version -shared -rpath /nowhere

EXTRA_DIST += bench/runner bench/run.sh bench/README.md bench/pair

BENCH_RUN = python3 $(top_srcdir)/bench/runner \
	--bindir $(abs_top_builddir)/bench \
	--pallet $(abs_top_builddir)/.libs/libpallet.so \
	--bump $(abs_top_builddir)/bench/.libs/bumpalloc.so

.PHONY: bench bench-callgrind
bench: all
	@quick=; case "$(QUICK)" in ""|0|no) ;; *) quick=--quick;; esac; \
	results=; test -z "$(BENCH_RESULTS)" || results="--results $(BENCH_RESULTS)"; \
	$(BENCH_RUN) $$quick $$results $(BENCH_ARGS)

bench-callgrind: all
	@results=; test -z "$(BENCH_RESULTS)" || results="--results $(BENCH_RESULTS)"; \
	$(BENCH_RUN) --callgrind $$results $(BENCH_ARGS)
