#!/bin/sh
# Runs test/link_dlopen on the libpallet.so of this build (LIBPALLET_SO,
# exported by AM_TESTS_ENVIRONMENT in Makefile.am).
exec "${builddir:-.}/test/link_dlopen" "$LIBPALLET_SO"
