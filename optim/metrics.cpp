#include "optim/metrics.h"

#include "tensor/error.h"

namespace hpa {

std::vector<ClassCounts> count_per_class(const std::vector<float>& scores, const std::vector<float>& targets,
                                         int64_t n, int64_t classes, double threshold) {
  HPA_CHECK(n >= 0 && classes > 0, "count_per_class: bad sizes n=", n, " classes=", classes);
  HPA_CHECK(static_cast<int64_t>(scores.size()) == n * classes && scores.size() == targets.size(),
            "count_per_class: ", scores.size(), " scores and ", targets.size(), " targets for ", n, "x",
            classes);
  std::vector<ClassCounts> counts(static_cast<size_t>(classes));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < classes; ++c) {
      const size_t k = static_cast<size_t>(i * classes + c);
      const bool predicted = scores[k] >= threshold, actual = targets[k] >= 0.5f;
      auto& cc = counts[static_cast<size_t>(c)];
      cc.tp += predicted && actual;
      cc.fp += predicted && !actual;
      cc.fn += !predicted && actual;
    }
  }
  return counts;
}

double macro_f1(const std::vector<float>& scores, const std::vector<float>& targets, int64_t n, int64_t classes,
                double threshold) {
  double s = 0;
  for (const auto& c : count_per_class(scores, targets, n, classes, threshold)) s += c.f1();
  return s / static_cast<double>(classes);
}

}  // namespace hpa
