// A synthetic HPA-like dataset with ground truth (`hpa_data synth`): procedural cells with
// nuclei in blue, microtubules in red, reticular ER in yellow and, in green, the protein
// pattern of each of the sample's labels (every one of the 28 classes drawn differently).
//
//  - Labels: each class independently with probability 0.75 * (real count / 31,072), redrawn
//    until 1..4 labels are set; this keeps every marginal close to the public train.csv's
//    (data/hpa_classes.h; rare classes stay rare) and gives 1-4 labels per sample, most
//    often 1 or 2. Then a few couplings mimic the real co-occurrence: lysosomes bring
//    endosomes (and endosomes lysosomes) most of the time, nucleoli fibrillar center often
//    comes with nucleoli, centrosome with MTOC, and mitotic spindle with cytokinetic bridge.
//  - Sample i depends only on (seed, i): its id, labels and pixels come from streams keyed by
//    both, so any thread count and any --count give the same sample i, byte for byte (on
//    one build: the images go through libm and the compiler's float contraction).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/csv.h"
#include "data/image.h"

namespace hpa::data {

// A UUID-shaped id ("8-4-4-4-12" lowercase hex), like the Kaggle ids.
std::string synth_id(uint64_t seed, int64_t index);
LabelMask synth_labels(uint64_t seed, int64_t index);
// The 4 x size x size image of sample `index` with these labels (size >= 64).
Image synth_image(LabelMask labels, int size, uint64_t seed, int64_t index);

struct SynthOptions {
  int64_t count = 0;
  int size = 512;
  uint64_t seed = 0;
  int threads = 0;    // 0: std::thread::hardware_concurrency()
  int png_level = 1;  // libdeflate level for the PNGs (0..12); 1: ~4 ms per 512² plane, +5% size vs 2
  double progress_seconds = 2;  // progress line interval on stderr; <= 0 for none
};

struct SynthReport {
  int64_t samples = 0;
  double seconds = 0;
};

// Writes <dir>/train.csv and <dir>/train/{Id}_{red,green,blue,yellow}.png. Every file is
// written atomically; train.csv is written last, so a directory with a train.csv is complete.
SynthReport write_synth_dataset(const std::string& dir, const SynthOptions& options);

}  // namespace hpa::data
