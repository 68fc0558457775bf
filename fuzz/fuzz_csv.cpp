// libFuzzer target: the CSV readers (train.csv and sample_submission.csv from data/csv.h,
// the Id,value files of split and dedupe from data/split.h) on arbitrary text. The readers
// take a path, so each input is written to a per-process temporary file first. Property
// checked besides "no crash": a train.csv that parses survives write_train_csv and a re-read
// unchanged.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "data/csv.h"
#include "data/error.h"
#include "data/split.h"

namespace {

std::string scratch_path(const char* suffix) {
  return "/tmp/hpa_fuzz_csv_" + std::to_string(::getpid()) + suffix;
}

void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hpa::data;
  const std::string path = scratch_path(".csv");
  write_bytes(path, data, size);
  try {
    const std::vector<Sample> samples = read_train_csv(path);
    const std::string again = scratch_path(".again.csv");
    write_train_csv(again, samples);
    if (read_train_csv(again) != samples) __builtin_trap();
    std::remove(again.c_str());
  } catch (const DataError&) {
  }
  try {
    (void)read_submission_ids(path);
  } catch (const DataError&) {
  }
  try {
    (void)read_id_value_csv(path, "group");
  } catch (const DataError&) {
  }
  std::remove(path.c_str());
  return 0;
}
