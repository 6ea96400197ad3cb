/*
 * statm.h — the one reader of /proc/self/statm the tests share.  It uses
 * open/read only (no stdio), so it can run where stdio would allocate.
 */
#ifndef PALLET_TEST_STATM_H
#define PALLET_TEST_STATM_H

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Field `field` of /proc/self/statm in bytes: 0 = total virtual size,
 * 1 = resident set.  0 when it cannot be read. */
static inline size_t statm_bytes(int field)
{
  char buf[256];
  unsigned long v[2] = {0, 0};
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  if (sscanf(buf, "%lu %lu", &v[0], &v[1]) != 2)
    return 0;
  return (size_t)v[field] * (size_t)sysconf(_SC_PAGESIZE);
}

#endif /* PALLET_TEST_STATM_H */
