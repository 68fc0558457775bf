// The --skip-bad policy, shared by every command that walks a dataset (stats, dedupe, pack,
// the loader). Without skip_bad a DataError propagates (the app prints it and exits non-zero);
// with it, the sample is skipped with exactly one warning line naming it and the error,
// and the skips are counted for a summary at the end. Thread-safe.
#pragma once

#include <cstdint>
#include <iostream>
#include <mutex>
#include <string>
#include <string_view>

#include "data/error.h"

namespace hpa::data {

class BadSamples {
 public:
  explicit BadSamples(bool skip_bad, std::ostream& warnings = std::cerr)
      : skip_bad_(skip_bad), out_(&warnings) {}

  // Runs work(); returns true if it completed. A DataError is rethrown unless skip_bad,
  // in which case it is reported and counted and false is returned.
  template <typename Work>
  bool attempt(std::string_view sample_id, Work&& work) {
    try {
      work();
      return true;
    } catch (const DataError& e) {
      if (!skip_bad_) throw;
      report(sample_id, e.what());
      return false;
    }
  }

  void report(std::string_view sample_id, std::string_view error) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++skipped_;
    *out_ << "warning: skipping sample " << sample_id << ": " << error << '\n';
  }

  bool skip_bad() const { return skip_bad_; }
  int64_t skipped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return skipped_;
  }
  // "skipped N bad samples" (nothing when none were skipped).
  void print_summary(std::string_view command) const {
    const int64_t n = skipped();
    if (n > 0) *out_ << command << ": skipped " << n << " bad sample" << (n == 1 ? "" : "s") << '\n';
  }

 private:
  bool skip_bad_;
  std::ostream* out_;
  mutable std::mutex mutex_;
  int64_t skipped_ = 0;
};

}  // namespace hpa::data
