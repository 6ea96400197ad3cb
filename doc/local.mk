# doc/local.mk — rules for doc/: the pallet(3) man page, installed with
# `make install`, and the design and user documents, shipped in the
# release tarball.  List every doc/*.md here by name: a file listed but
# missing breaks `make dist`, one not listed is left out of the tarball.
#   doc/pallet.3   man page (man(7) macros); check: groff -man -Tutf8 -ww
#   doc/design.md  the layers, a malloc's and a free's path, locks, fork
#   doc/tuning.md  PALLET_* options, configure switches, preload / link
#   doc/stress.md  the pallet-stress harness (tools/)
#   doc/fuzzing.md the libFuzzer harness (test/fuzz/)
#   doc/security.md what the checks catch and what they do not
#   doc/benchmarks.md a full comparison run, with the machine and commands
# (tools/local.mk and test/fuzz.mk list their doc too; a file listed twice
# is copied once.)

dist_man_MANS += doc/pallet.3

EXTRA_DIST += \
	doc/design.md \
	doc/tuning.md \
	doc/stress.md \
	doc/fuzzing.md \
	doc/security.md \
	doc/benchmarks.md \
	doc/img/bench-ratio.png
