/*
 * cxxobjects.cc — C++ objects made with new and destroyed with delete.
 *
 * usage: bench-cxxobjects [--quick] [--ops N] [--threads T]
 *
 * Each thread (2 by default) keeps 4096 records, each a heap object
 * holding a std::string (8-120 characters, on the heap past the string's
 * 15-character inline buffer) and a std::vector<int> (0-32 elements),
 * kept in a std::unordered_map from a key to the record.  An operation
 * replaces a random record: the old one is erased from the map (its node,
 * string, vector and record deleted, with sized delete as libstdc++'s
 * allocator uses it) and a new one is built and inserted; one in four
 * operations instead looks a key up and reads its record.  So every
 * allocation goes through operator new and every free through operator
 * delete, as in a C++ server's request handling: an allocator that
 * defines these operators itself (jemalloc, tcmalloc, mimalloc, pallet)
 * saves the C++ runtime's layer over malloc and free.
 */
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench.h"

#define RECORDS 4096

struct record {
  std::string name;
  std::vector<int> values;
  uint64_t key;
};

static void *run(void *arg) {
  struct bench_job *j = static_cast<struct bench_job *>(arg);
  uint64_t rng = j->seed, sum = 0;
  std::unordered_map<uint64_t, std::unique_ptr<record>> map;
  std::vector<uint64_t> keys(RECORDS);
  auto make = [&rng](uint64_t key) {
    std::unique_ptr<record> r(new record);
    r->key = key;
    r->name.assign(bench_range(&rng, 8, 120), char('a' + key % 26));
    r->values.resize(bench_range(&rng, 0, 32), int(key));
    return r;
  };
  for (int i = 0; i < RECORDS; i++) {
    keys[i] = bench_rand(&rng);
    map.emplace(keys[i], make(keys[i]));
  }
  for (long long i = 0; i < j->count; i++) {
    uint64_t r = bench_rand(&rng);
    size_t slot = (size_t)(r % RECORDS);
    if ((r >> 32) % 4 == 0) {
      auto it = map.find(keys[slot]);
      if (it == map.end() || it->second->key != keys[slot])
        bench_die("cxxobjects", "a record went missing");
      sum += (uint64_t)it->second->name.size() + it->second->values.size();
      continue;
    }
    map.erase(keys[slot]);
    keys[slot] = bench_rand(&rng);
    map.emplace(keys[slot], make(keys[slot]));
  }
  j->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  struct bench_args a;
  bench_parse_options(argc, argv, &a);
  int t = a.threads > 0 ? a.threads : 2;
  long long ops = bench_ops(&a, 8000000);
  uint64_t sum;
  double secs = bench_run_jobs("cxxobjects", t, ops / t, a.seed, 11, run, &sum);
  bench_result("cxxobjects", ops / t * t, secs, "threads=%d checksum=%llu", t,
               (unsigned long long)(sum % 100000));
  return 0;
}
