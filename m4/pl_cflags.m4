# PL_ADD_CFLAG(VARIABLE, FLAG): append FLAG to VARIABLE if the C compiler
# accepts it (with -Werror, so that a merely warned-about flag is refused).
AC_DEFUN([PL_ADD_CFLAG], [
  AS_VAR_PUSHDEF([pl_cache], [pl_cv_cflag_$2])
  AC_CACHE_CHECK([whether $CC accepts $2], [pl_cache], [
    pl_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror $2"
    AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])],
      [AS_VAR_SET([pl_cache], [yes])], [AS_VAR_SET([pl_cache], [no])])
    CFLAGS=$pl_save_CFLAGS])
  AS_VAR_IF([pl_cache], [yes], [$1="$$1 $2"])
  AS_VAR_POPDEF([pl_cache])
])
