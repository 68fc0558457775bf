// hpa_data split: flags -> data/split.h, then a per-fold label table on stdout.
#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "apps/common/args.h"
#include "apps/hpa_data/commands.h"
#include "data/csv.h"
#include "data/hpa_classes.h"

namespace hpa::cli {

int split(int argc, char** argv) {
  Args args(argc, argv, {"quiet"});
  if (args.help()) {
    std::printf(
        "usage: hpa_data split --data DIR --folds K --seed S --out folds.csv [--groups groups.csv]\n"
        "                      [--csv train.csv] [--quiet]\n"
        "  Multi-label stratified k-fold of DIR/<csv> by iterative stratification (Sechidis et al.\n"
        "  2011), then a size-balancing pass that keeps every label within one sample of its ideal\n"
        "  count. --groups (Id,group, e.g. from hpa_data dedupe) keeps each group in one fold.\n"
        "  Writes Id,fold atomically and prints the per-fold label counts. Deterministic for a seed.\n");
    return 0;
  }
  const std::string dir = args.required("data");
  const std::string out = args.required("out");
  const int folds = static_cast<int>(args.integer("folds", 5));
  const uint64_t seed = args.unsigned_integer("seed", 0);
  const std::string groups_path = args.str("groups", "");
  const std::string csv = args.str("csv", "train.csv");
  const bool quiet = args.flag("quiet");
  args.finish();
  if (folds < 2) throw UsageError("--folds must be at least 2");

  const std::vector<data::Sample> samples = data::read_train_csv(dir + "/" + csv);
  const auto labels = data::label_lists(samples);
  const std::vector<int64_t> groups =
      groups_path.empty() ? std::vector<int64_t>{} : data::read_group_keys(groups_path, samples);
  const std::vector<int> fold_of =
      data::iterative_stratification(labels, data::kNumClasses, {folds, seed}, groups);
  data::write_folds_csv(out, samples, fold_of);

  const auto sizes = data::fold_sizes(fold_of, folds);
  std::printf("split: %zu samples%s into %d folds (seed %llu) -> %s\n", samples.size(),
              groups.empty() ? "" : " (groups kept together)", folds, static_cast<unsigned long long>(seed),
              out.c_str());
  if (quiet) return 0;
  const auto counts = data::fold_label_counts(labels, data::kNumClasses, fold_of, folds);
  std::printf("%-32s", "class");
  for (int f = 0; f < folds; ++f) std::printf(" %7s%d", "fold", f);
  std::printf("   ideal  worst\n%-32s", "samples");
  for (int f = 0; f < folds; ++f)
    std::printf(" %8lld", static_cast<long long>(sizes[static_cast<size_t>(f)]));
  std::printf(" %7.1f\n", static_cast<double>(samples.size()) / folds);
  double worst_overall = 0;
  for (int c = 0; c < data::kNumClasses; ++c) {
    int64_t total = 0;
    for (int f = 0; f < folds; ++f) total += counts[static_cast<size_t>(f)][static_cast<size_t>(c)];
    const double ideal = static_cast<double>(total) / folds;
    double worst = 0;
    std::printf("%2d %-29.29s", c, std::string(data::kHpaClassNames[static_cast<size_t>(c)]).c_str());
    for (int f = 0; f < folds; ++f) {
      const int64_t n = counts[static_cast<size_t>(f)][static_cast<size_t>(c)];
      worst = std::max(worst, std::abs(static_cast<double>(n) - ideal));
      std::printf(" %8lld", static_cast<long long>(n));
    }
    worst_overall = std::max(worst_overall, worst);
    std::printf(" %7.1f %6.2f\n", ideal, worst);
  }
  std::printf("largest deviation of a label count from its ideal: %.2f samples\n", worst_overall);
  return 0;
}

}  // namespace hpa::cli
