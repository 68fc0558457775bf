// hpa_data dedupe: flags -> data/dedupe.h (hash every sample, group near-duplicates).
#include "data/dedupe.h"

#include <chrono>
#include <cstdio>
#include <map>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"
#include "data/csv.h"

namespace hpa::cli {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int dedupe(int argc, char** argv) {
  Args args(argc, argv, {"skip-bad", "quiet"});
  if (args.help()) {
    std::printf(
        "usage: hpa_data dedupe --data DIR --out groups.csv [--threshold T] [--stains gb]\n"
        "                       [--drop-duplicates OUT.csv] [--csv train.csv] [--images train]\n"
        "                       [--threads N] [--skip-bad] [--quiet]\n"
        "  A 64-bit pHash per stain of every sample; two samples are near-duplicates when the\n"
        "  Hamming distance summed over the chosen stains (letters r g b y; default gb) is at most\n"
        "  T (default %d of 126 bits for gb). Groups are the connected components; writes Id,group\n"
        "  (groups numbered in order of first member). --drop-duplicates writes a train.csv that\n"
        "  keeps only the first sample of each group.\n",
        data::kDefaultDedupeThreshold);
    return 0;
  }
  const std::string dir = args.required("data");
  const std::string out = args.required("out");
  data::DedupeOptions options;
  options.threshold = static_cast<int>(args.integer("threshold", data::kDefaultDedupeThreshold));
  options.stains = data::parse_stain_letters(args.str("stains", "gb"));
  options.threads = static_cast<int>(args.integer("threads", 2));
  const std::string drop_out = args.str("drop-duplicates", "");
  const std::string csv = args.str("csv", "train.csv");
  const std::string images = args.str("images", "train");
  const bool skip_bad = args.flag("skip-bad");
  const bool quiet = args.flag("quiet");
  args.finish();
  if (options.threshold < 0) throw UsageError("--threshold must be >= 0");
  if (options.threads < 1) throw UsageError("--threads must be >= 1");

  const data::DatasetIndex index = data::DatasetIndex::open(dir, csv, images);
  auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  const data::DatasetHashes hashes =
      data::hash_dataset(index, options.threads, skip_bad, [&](int64_t done, int64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (!quiet && (now - last_report > std::chrono::seconds(2) || done == total)) {
          std::fprintf(stderr, "dedupe: hashed %lld / %lld samples\n", static_cast<long long>(done),
                       static_cast<long long>(total));
          last_report = now;
        }
      });
  const double hash_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const std::vector<int64_t> group_of = data::group_near_duplicates(hashes.hashes, options, hashes.valid);
  const double group_seconds = seconds_since(start);
  data::write_groups_csv(out, index.samples(), group_of);

  std::map<int64_t, int64_t> members;
  for (int64_t g : group_of) ++members[g];
  int64_t groups_with_copies = 0, samples_in_them = 0;
  for (const auto& [g, n] : members)
    if (n > 1) {
      ++groups_with_copies;
      samples_in_them += n;
    }
  if (hashes.skipped > 0)
    std::fprintf(stderr, "dedupe: skipped %lld bad sample%s (each left in a group of its own)\n",
                 static_cast<long long>(hashes.skipped), hashes.skipped == 1 ? "" : "s");
  std::printf(
      "dedupe: %zu samples, %lld groups of near-duplicates holding %lld samples (threshold %d) -> %s\n",
      index.size(), static_cast<long long>(groups_with_copies), static_cast<long long>(samples_in_them),
      options.threshold, out.c_str());
  std::printf("dedupe: hashing %.1f s, all-pairs grouping %.2f s\n", hash_seconds, group_seconds);
  if (!drop_out.empty()) {
    const std::vector<data::Sample> kept = data::keep_first_of_each_group(index.samples(), group_of);
    data::write_train_csv(drop_out, kept);
    std::printf("dedupe: kept %zu of %zu samples -> %s\n", kept.size(), index.size(), drop_out.c_str());
  }
  return 0;
}

}  // namespace hpa::cli
