// Multi-label metrics. The paper's (and the Kaggle challenge's) score is macro F1: the
// F1 of each class, averaged over classes. A class with no positives and no predicted
// positives has an undefined F1; like scikit-learn's zero_division=0 we count it as 0,
// which is the conservative choice for a score that rewards rare classes.
#pragma once

#include <cstdint>
#include <vector>

namespace hpa {

struct ClassCounts {
  int64_t tp = 0, fp = 0, fn = 0;
  double f1() const {
    const int64_t d = 2 * tp + fp + fn;
    return d == 0 ? 0.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(d);
  }
};

// scores and targets are row-major [n, classes]; a score >= threshold predicts the label.
std::vector<ClassCounts> count_per_class(const std::vector<float>& scores, const std::vector<float>& targets,
                                         int64_t n, int64_t classes, double threshold);
double macro_f1(const std::vector<float>& scores, const std::vector<float>& targets, int64_t n, int64_t classes,
                double threshold);

}  // namespace hpa
