# PL_CHECK_PTHREAD: find how to compile and link POSIX threads.
# Sets and substitutes PTHREAD_CFLAGS and PTHREAD_LIBS.
AC_DEFUN([PL_CHECK_PTHREAD], [
  AC_REQUIRE([AC_PROG_CC])
  AC_CACHE_CHECK([how to build with POSIX threads], [pl_cv_pthread], [
    pl_cv_pthread=no
    pl_save_CFLAGS=$CFLAGS
    pl_save_LIBS=$LIBS
    for pl_flag in "" "-pthread" "-lpthread"; do
      CFLAGS="$pl_save_CFLAGS"
      LIBS="$pl_save_LIBS"
      case $pl_flag in
        -l*) LIBS="$pl_flag $LIBS" ;;
        -*) CFLAGS="$CFLAGS $pl_flag"; LIBS="$pl_flag $LIBS" ;;
      esac
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>
static void *f(void *a) { return a; }]],
        [[pthread_t t; pthread_key_t k; pthread_create(&t, 0, f, 0);
          pthread_join(t, 0); pthread_key_create(&k, 0);
          pthread_atfork(0, 0, 0);]])],
        [pl_cv_pthread="$pl_flag"; test -z "$pl_cv_pthread" && pl_cv_pthread="none needed"; break])
    done
    CFLAGS=$pl_save_CFLAGS
    LIBS=$pl_save_LIBS])
  AS_CASE([$pl_cv_pthread],
    [no], [AC_MSG_ERROR([POSIX threads are required])],
    ["none needed"], [PTHREAD_CFLAGS=""; PTHREAD_LIBS=""],
    [-l*], [PTHREAD_CFLAGS=""; PTHREAD_LIBS="$pl_cv_pthread"],
    [PTHREAD_CFLAGS="$pl_cv_pthread"; PTHREAD_LIBS="$pl_cv_pthread"])
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])
