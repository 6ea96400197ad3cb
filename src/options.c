/*
 * options.c — parsing of PALLET_* variables.  Uses no libc function that
 * allocates: the environment is scanned by hand.
 */
#include "options.h"

#include "error.h"

pl_options_t pl_opt = {
    .stats = false,
    .verbose = 0,
    .tcache_max = PL_TCACHE_MAX_DEFAULT,
    .tcache_total = PL_TCACHE_TOTAL_DEFAULT,
    .decay_ms = 1000,
    .purge = 0,
    .canary = false,
    .junk = false,
    .background = false,
    .retain_chunks = 1,
    .dirty_max = (size_t)16 << 20,
    .heaps = 0,
};

static bool streq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

/* Unsigned decimal with an optional k/m/g suffix (powers of 1024). */
static bool parse_size(const char *v, uint64_t max, uint64_t *out) {
  uint64_t n = 0;
  if (*v < '0' || *v > '9') return false;
  while (*v >= '0' && *v <= '9') {
    uint64_t d = (uint64_t)(*v++ - '0');
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  unsigned shift = 0;
  if (*v == 'k' || *v == 'K') shift = 10, v++;
  else if (*v == 'm' || *v == 'M') shift = 20, v++;
  else if (*v == 'g' || *v == 'G') shift = 30, v++;
  if (*v != 0) return false;
  if (shift && n > (UINT64_MAX >> shift)) return false;
  n <<= shift;
  if (n > max) return false;
  *out = n;
  return true;
}

static bool parse_bool(const char *v, bool *out) {
  if (streq(v, "1") || streq(v, "true") || streq(v, "yes") || streq(v, "on")) {
    *out = true;
    return true;
  }
  if (streq(v, "0") || streq(v, "false") || streq(v, "no") || streq(v, "off")) {
    *out = false;
    return true;
  }
  return false;
}

static void warn_bad(const char *name, const char *value, const char *expect) {
  pl_msg_t m = {.len = 0};
  pl_msg_str(&m, "pallet: warning: ignoring ");
  pl_msg_str(&m, name);
  pl_msg_str(&m, "=");
  pl_msg_str(&m, value);
  pl_msg_str(&m, " (expected ");
  pl_msg_str(&m, expect);
  pl_msg_str(&m, "); using the default\n");
  pl_msg_write(&m);
}

static void set_option(const char *name, const char *value) {
  uint64_t n;
  bool b;
  if (streq(name, "PALLET_STATS")) {
    if (parse_bool(value, &b)) pl_opt.stats = b;
    else warn_bad(name, value, "0 or 1");
  } else if (streq(name, "PALLET_VERBOSE")) {
    if (parse_size(value, 2, &n)) pl_opt.verbose = (int)n;
    else warn_bad(name, value, "0, 1 or 2");
  } else if (streq(name, "PALLET_TCACHE_MAX")) {
    if (parse_size(value, (uint64_t)1 << 30, &n)) pl_opt.tcache_max = (size_t)n;
    else warn_bad(name, value, "a byte count up to 1g, suffix k/m/g allowed");
  } else if (streq(name, "PALLET_TCACHE_TOTAL")) {
    if (parse_size(value, (uint64_t)64 << 30, &n)) pl_opt.tcache_total = (size_t)n;
    else warn_bad(name, value, "a byte count up to 64g, suffix k/m/g allowed; 0 for no bound");
  } else if (streq(name, "PALLET_DECAY_MS")) {
    if (parse_size(value, (uint64_t)3600 * 1000, &n)) pl_opt.decay_ms = n;
    else warn_bad(name, value, "milliseconds, 0 to 3600000");
  } else if (streq(name, "PALLET_PURGE")) {
    if (streq(value, "dontneed")) pl_opt.purge = 0;
    else if (streq(value, "free")) pl_opt.purge = 1;
    else warn_bad(name, value, "dontneed or free");
  } else if (streq(name, "PALLET_CANARY")) {
    if (parse_bool(value, &b)) pl_opt.canary = b;
    else warn_bad(name, value, "0 or 1");
  } else if (streq(name, "PALLET_JUNK")) {
    if (parse_bool(value, &b)) pl_opt.junk = b;
    else warn_bad(name, value, "0 or 1");
  } else if (streq(name, "PALLET_BACKGROUND_THREAD")) {
    if (parse_bool(value, &b)) pl_opt.background = b;
    else warn_bad(name, value, "0 or 1");
  } else if (streq(name, "PALLET_DIRTY_MAX")) {
    if (parse_size(value, (uint64_t)1 << 40, &n)) pl_opt.dirty_max = (size_t)n;
    else warn_bad(name, value, "a byte count, suffix k/m/g allowed");
  } else if (streq(name, "PALLET_HEAPS")) {
    if (parse_size(value, 16, &n) && n >= 1) pl_opt.heaps = (unsigned)n;
    else warn_bad(name, value, "a count of heaps, 1 to 16");
  } else if (streq(name, "PALLET_RETAIN_CHUNKS")) {
    if (parse_size(value, 1024, &n)) pl_opt.retain_chunks = (size_t)n;
    else warn_bad(name, value, "a count of chunks, 0 to 1024");
  } else {
    pl_msg_t m = {.len = 0};
    pl_msg_str(&m, "pallet: warning: unknown option ");
    pl_msg_str(&m, name);
    pl_msg_str(&m, " ignored\n");
    pl_msg_write(&m);
  }
}

void pl_options_parse(char *const *envp) {
  if (envp == NULL) return;
  for (; *envp; envp++) {
    const char *e = *envp;
    const char *prefix = "PALLET_";
    size_t i = 0;
    while (prefix[i] && e[i] == prefix[i]) i++;
    if (prefix[i] != 0) continue;
    char name[64];
    size_t k = 0;
    while (e[k] && e[k] != '=' && k < sizeof name - 1) {
      name[k] = e[k];
      k++;
    }
    name[k] = 0;
    if (e[k] != '=') {
      set_option(name, "");
      continue;
    }
    set_option(name, e + k + 1);
  }
}
