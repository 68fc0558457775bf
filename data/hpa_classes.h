// The 28 HPA Image Classification (2018) classes and their counts in the public 31,072-image
// train.csv: the facts the synthetic generator shapes its label statistics on (and that
// tests compare against). Kept in code so nothing outside the repository is read at run time.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "data/csv.h"

namespace hpa::data {

constexpr int64_t kHpaTrainImages = 31072;

constexpr std::array<std::string_view, kNumClasses> kHpaClassNames = {"Nucleoplasm",
                                                                      "Nuclear membrane",
                                                                      "Nucleoli",
                                                                      "Nucleoli fibrillar center",
                                                                      "Nuclear speckles",
                                                                      "Nuclear bodies",
                                                                      "Endoplasmic reticulum",
                                                                      "Golgi apparatus",
                                                                      "Peroxisomes",
                                                                      "Endosomes",
                                                                      "Lysosomes",
                                                                      "Intermediate filaments",
                                                                      "Actin filaments",
                                                                      "Focal adhesion sites",
                                                                      "Microtubules",
                                                                      "Microtubule ends",
                                                                      "Cytokinetic bridge",
                                                                      "Mitotic spindle",
                                                                      "Microtubule organizing center",
                                                                      "Centrosome",
                                                                      "Lipid droplets",
                                                                      "Plasma membrane",
                                                                      "Cell junctions",
                                                                      "Mitochondria",
                                                                      "Aggresome",
                                                                      "Cytosol",
                                                                      "Cytoplasmic bodies",
                                                                      "Rods & rings"};

constexpr std::array<int64_t, kNumClasses> kHpaTrainCounts = {
    12885, 1254, 3621, 1561, 1858, 2513, 1008, 2822, 53,  45,   28,  1093, 688, 537,
    1066,  21,   530,  210,  902,  1482, 172,  3777, 802, 2965, 322, 8228, 328, 11};

}  // namespace hpa::data
