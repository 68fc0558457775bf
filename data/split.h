// Multi-label stratified k-fold by iterative stratification (Sechidis, Tsoumakas and Vlahavas,
// "On the stratification of multi-label data", ECML PKDD 2011, Algorithm 1 with equal fold
// ratios). The rule a reader would otherwise guess: the unit of assignment is a *group* of
// samples (duplicate images found by `hpa_data dedupe`), never split across folds; its label
// vector is the sum of its members' 0/1 vectors and its weight is its member count. Without
// groups every sample is its own unit and the algorithm is the paper's.
//
// The paper balances labels, not fold sizes (a fold that drew more single-label samples ends
// up larger); a second pass moves or exchanges units between the largest and smallest folds
// without taking any label count more than one sample from its ideal (split.cpp). On label
// sets shaped like HPA 2018 every label ends within one sample of count/K and the folds within
// one sample of each other (test_data_pipe).
//
// Deterministic for a seed: the units are visited in a seeded shuffled order and every tie
// (between labels with equally few remaining samples, between folds) is broken by the same
// seeded generator, so one seed gives one assignment on every machine.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/csv.h"

namespace hpa::data {

struct StratifiedSplitOptions {
  int folds = 5;
  uint64_t seed = 0;
};

// labels[i] lists the classes of sample i (each in [0, num_classes), no repeats required to
// be absent: a repeated class counts once). groups is empty (every sample alone) or holds
// one key per sample; samples sharing a key land in one fold. Returns the fold of each sample
// in [0, folds). Throws when folds < 2, when there are fewer units than folds, or on a class
// index out of range.
std::vector<int> iterative_stratification(const std::vector<std::vector<int>>& labels, int num_classes,
                                          const StratifiedSplitOptions& options,
                                          const std::vector<int64_t>& groups = {});

// counts[f][c]: the number of samples of fold f that carry class c.
std::vector<std::vector<int64_t>> fold_label_counts(const std::vector<std::vector<int>>& labels,
                                                    int num_classes, const std::vector<int>& fold_of,
                                                    int folds);

// The number of samples in each fold.
std::vector<int64_t> fold_sizes(const std::vector<int>& fold_of, int folds);

// Label lists of data/csv.h samples, the input of iterative_stratification.
std::vector<std::vector<int>> label_lists(const std::vector<Sample>& samples);

// ---- the small CSV files of split and dedupe ----------------------------------------------
// `Id,<column>` files (folds.csv: Id,fold; groups.csv: Id,group): a header line, then one
// `id,value` row per sample; CRLF line ends and a final newline are accepted.

// Rows of such a file in order. Throws DataError naming the file and the 1-based line on a
// wrong header, a row without exactly one comma, an empty id or value, or a repeated id.
std::vector<std::pair<std::string, std::string>> read_id_value_csv(const std::string& path,
                                                                   const std::string& column);
// Writes the rows atomically with the header `Id,<column>`.
void write_id_value_csv(const std::string& path, const std::string& column,
                        const std::vector<std::pair<std::string, std::string>>& rows);

// folds.csv for the samples (Id order as given), and back: the fold of each sample; a sample
// missing from the file, or a fold that is not an integer in [0, folds), is an error naming it.
void write_folds_csv(const std::string& path, const std::vector<Sample>& samples,
                     const std::vector<int>& fold_of);
std::vector<int> read_folds_csv(const std::string& path, const std::vector<Sample>& samples);

// groups.csv -> one group key per sample (equal keys: one group). Group values are opaque
// strings (dedupe writes integers); ids in the file that are not among the samples are
// ignored (a groups file may cover external data too); a sample missing from it is an error.
std::vector<int64_t> read_group_keys(const std::string& path, const std::vector<Sample>& samples);

}  // namespace hpa::data
