#include "data/split.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <numeric>
#include <string>
#include <string_view>
#include <unordered_map>

#include "data/error.h"
#include "data/file_io.h"
#include "data/sampler.h"

namespace hpa::data {

namespace {

struct Unit {
  std::vector<int> members;
  std::vector<std::pair<int, int64_t>> label_counts;  // (class, member samples carrying it)
};

// Builds the units (groups, or single samples) in a seeded shuffled order, so that the
// visiting order inside one label carries no trace of the CSV order.
std::vector<Unit> make_units(const std::vector<std::vector<int>>& labels, int num_classes,
                             const std::vector<int64_t>& groups, Rng& rng) {
  const size_t n = labels.size();
  std::vector<Unit> units;
  std::unordered_map<int64_t, size_t> unit_of_group;
  std::vector<int64_t> counts(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < n; ++i) {
    size_t u;
    if (groups.empty()) {
      u = units.size();
      units.emplace_back();
    } else {
      auto [it, inserted] = unit_of_group.try_emplace(groups[i], units.size());
      if (inserted) units.emplace_back();
      u = it->second;
    }
    units[u].members.push_back(static_cast<int>(i));
  }
  for (Unit& unit : units) {
    std::fill(counts.begin(), counts.end(), 0);
    for (int i : unit.members) {
      std::vector<int> sample = labels[static_cast<size_t>(i)];
      std::sort(sample.begin(), sample.end());
      sample.erase(std::unique(sample.begin(), sample.end()), sample.end());
      for (int c : sample) {
        if (c < 0 || c >= num_classes)
          throw DataError("split: sample " + std::to_string(i) + " has class " + std::to_string(c) +
                          " outside [0, " + std::to_string(num_classes) + ")");
        ++counts[static_cast<size_t>(c)];
      }
    }
    for (int c = 0; c < num_classes; ++c)
      if (counts[static_cast<size_t>(c)] > 0)
        unit.label_counts.emplace_back(c, counts[static_cast<size_t>(c)]);
  }
  shuffle(units, rng);
  return units;
}

// Among the indices with the largest key, a seeded uniform pick (the paper breaks ties at
// random; a fixed generator keeps that deterministic).
template <class Key>
int argmax_random_tie(int count, Key key, Rng& rng) {
  int best = -1;
  int ties = 0;
  for (int j = 0; j < count; ++j) {
    if (best < 0 || key(j) > key(best)) {
      best = j;
      ties = 1;
    } else if (!(key(j) < key(best))) {
      // Reservoir pick among equals: the j-th tie replaces the choice with probability 1/j.
      ++ties;
      if (rng.below(static_cast<uint64_t>(ties)) == 0) best = j;
    }
  }
  return best;
}

// Iterative stratification balances labels, not sizes: a fold that drew more single-label
// samples and fewer multi-label ones holds the same label counts in more samples, so folds
// can end up tens of samples apart. This pass narrows the gap between the largest and the
// smallest fold with two kinds of step, taking the first that applies (units in their seeded
// order, so the result stays deterministic) until neither does:
//  - move one unit when every one of its labels stays within one sample of its ideal count
//    in both folds (the property the first pass gives);
//  - exchange, which leaves every label count unchanged: a one-sample unit with labels
//    {a, b, ...} goes to the larger fold, and single-sample units with exactly {a}, {b}, ...
//    go to the smaller one.
// A step is taken only when it shrinks the gap.
void balance_fold_sizes(const std::vector<Unit>& units, std::vector<int>& unit_fold, int folds,
                        size_t classes) {
  std::vector<int64_t> size(static_cast<size_t>(folds), 0);
  std::vector<std::vector<int64_t>> count(static_cast<size_t>(folds), std::vector<int64_t>(classes, 0));
  std::vector<double> ideal(classes, 0.0);
  for (size_t u = 0; u < units.size(); ++u) {
    const size_t f = static_cast<size_t>(unit_fold[u]);
    size[f] += static_cast<int64_t>(units[u].members.size());
    for (auto [c, n] : units[u].label_counts) {
      count[f][static_cast<size_t>(c)] += n;
      ideal[static_cast<size_t>(c)] += static_cast<double>(n) / folds;
    }
  }
  auto move = [&](size_t u, size_t from, size_t to) {
    unit_fold[u] = static_cast<int>(to);
    const int64_t s = static_cast<int64_t>(units[u].members.size());
    size[from] -= s;
    size[to] += s;
    for (auto [c, n] : units[u].label_counts) {
      count[from][static_cast<size_t>(c)] -= n;
      count[to][static_cast<size_t>(c)] += n;
    }
  };
  const double tolerance = 1.0 + 1e-9;
  auto try_move = [&](size_t from, size_t to) {
    for (size_t u = 0; u < units.size(); ++u) {
      if (static_cast<size_t>(unit_fold[u]) != from) continue;
      if (size[from] - size[to] <= static_cast<int64_t>(units[u].members.size())) continue;
      bool within = true;
      for (auto [c, n] : units[u].label_counts) {
        const size_t k = static_cast<size_t>(c);
        within = within && static_cast<double>(count[from][k] - n) >= ideal[k] - tolerance &&
                 static_cast<double>(count[to][k] + n) <= ideal[k] + tolerance;
      }
      if (within) {
        move(u, from, to);
        return true;
      }
    }
    return false;
  };
  auto try_exchange = [&](size_t large, size_t small) {
    // Single-sample, single-label units of the large fold, by label, in seeded order.
    std::vector<std::vector<size_t>> singles(classes);
    for (size_t u = 0; u < units.size(); ++u)
      if (static_cast<size_t>(unit_fold[u]) == large && units[u].members.size() == 1 &&
          units[u].label_counts.size() == 1)
        singles[static_cast<size_t>(units[u].label_counts[0].first)].push_back(u);
    for (size_t v = 0; v < units.size(); ++v) {
      const auto& labels = units[v].label_counts;
      if (static_cast<size_t>(unit_fold[v]) != small || units[v].members.size() != 1 || labels.size() < 2)
        continue;
      const int64_t shift = static_cast<int64_t>(labels.size()) - 1;  // samples moved from large to small
      if (size[large] - size[small] <= shift) continue;
      bool available = true;
      for (auto [c, n] : labels) available = available && !singles[static_cast<size_t>(c)].empty();
      if (!available) continue;
      move(v, small, large);
      for (auto [c, n] : labels) move(singles[static_cast<size_t>(c)].front(), large, small);
      return true;
    }
    return false;
  };
  while (true) {
    // Fold pairs from the largest gap down.
    std::vector<size_t> order(static_cast<size_t>(folds));
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return size[a] > size[b]; });
    bool stepped = false;
    for (size_t i = 0; i < order.size() && !stepped; ++i)
      for (size_t j = order.size(); j-- > i + 1 && !stepped;) {
        if (size[order[i]] - size[order[j]] <= 1) continue;
        stepped = try_move(order[i], order[j]) || try_exchange(order[i], order[j]);
      }
    if (!stepped) return;
  }
}
}  // namespace

std::vector<int> iterative_stratification(const std::vector<std::vector<int>>& labels, int num_classes,
                                          const StratifiedSplitOptions& options,
                                          const std::vector<int64_t>& groups) {
  const int folds = options.folds;
  if (folds < 2) throw DataError("split: need at least 2 folds, got " + std::to_string(folds));
  if (num_classes <= 0) throw DataError("split: need at least one class, got " + std::to_string(num_classes));
  if (!groups.empty() && groups.size() != labels.size())
    throw DataError("split: " + std::to_string(groups.size()) + " group keys for " +
                    std::to_string(labels.size()) + " samples");
  Rng rng(mix_seed(options.seed, 0x5b1f7e57a71f1ca7ull));
  std::vector<Unit> units = make_units(labels, num_classes, groups, rng);
  if (units.size() < static_cast<size_t>(folds))
    throw DataError("split: " + std::to_string(folds) + " folds but only " + std::to_string(units.size()) +
                    (groups.empty() ? " samples" : " groups of samples") + "; need at least one per fold");

  const size_t classes = static_cast<size_t>(num_classes);
  const double n = static_cast<double>(labels.size());
  // desired[j][c]: samples with class c fold j still wants; desired_total[j]: samples overall.
  std::vector<int64_t> remaining(classes, 0);
  std::vector<std::vector<size_t>> units_with(classes);
  for (size_t u = 0; u < units.size(); ++u)
    for (auto [c, count] : units[u].label_counts) {
      remaining[static_cast<size_t>(c)] += count;
      units_with[static_cast<size_t>(c)].push_back(u);
    }
  std::vector<std::vector<double>> desired(static_cast<size_t>(folds), std::vector<double>(classes));
  std::vector<double> desired_total(static_cast<size_t>(folds), n / folds);
  for (size_t c = 0; c < classes; ++c)
    for (int j = 0; j < folds; ++j)
      desired[static_cast<size_t>(j)][c] = static_cast<double>(remaining[c]) / folds;

  std::vector<int> unit_fold(units.size(), -1);
  auto assign = [&](size_t u, int j) {
    unit_fold[u] = j;
    for (auto [c, count] : units[u].label_counts) {
      desired[static_cast<size_t>(j)][static_cast<size_t>(c)] -= static_cast<double>(count);
      remaining[static_cast<size_t>(c)] -= count;
    }
    desired_total[static_cast<size_t>(j)] -= static_cast<double>(units[u].members.size());
  };

  // The label with the fewest remaining samples is the hardest to spread: place its units
  // first, each in the fold that wants that label most (then the fold that wants most
  // samples overall, then a random one).
  while (true) {
    int label = -1;
    int ties = 0;
    for (int c = 0; c < num_classes; ++c) {
      const int64_t r = remaining[static_cast<size_t>(c)];
      if (r <= 0) continue;
      if (label < 0 || r < remaining[static_cast<size_t>(label)]) {
        label = c;
        ties = 1;
      } else if (r == remaining[static_cast<size_t>(label)]) {
        ++ties;
        if (rng.below(static_cast<uint64_t>(ties)) == 0) label = c;
      }
    }
    if (label < 0) break;
    for (size_t u : units_with[static_cast<size_t>(label)]) {
      if (unit_fold[u] >= 0) continue;
      const int j = argmax_random_tie(
          folds,
          [&](int f) {
            return std::pair(desired[static_cast<size_t>(f)][static_cast<size_t>(label)],
                             desired_total[static_cast<size_t>(f)]);
          },
          rng);
      assign(u, j);
    }
  }
  // Units without any label only balance the fold sizes.
  for (size_t u = 0; u < units.size(); ++u) {
    if (unit_fold[u] >= 0) continue;
    assign(u, argmax_random_tie(
                  folds, [&](int f) { return desired_total[static_cast<size_t>(f)]; }, rng));
  }

  balance_fold_sizes(units, unit_fold, folds, classes);

  std::vector<int> fold_of(labels.size(), -1);
  for (size_t u = 0; u < units.size(); ++u)
    for (int i : units[u].members) fold_of[static_cast<size_t>(i)] = unit_fold[u];
  return fold_of;
}

std::vector<std::vector<int64_t>> fold_label_counts(const std::vector<std::vector<int>>& labels,
                                                    int num_classes, const std::vector<int>& fold_of,
                                                    int folds) {
  if (fold_of.size() != labels.size())
    throw DataError("fold_label_counts: " + std::to_string(fold_of.size()) + " folds for " +
                    std::to_string(labels.size()) + " samples");
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(folds),
                                           std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  for (size_t i = 0; i < labels.size(); ++i) {
    const int f = fold_of[i];
    if (f < 0 || f >= folds)
      throw DataError("fold_label_counts: sample " + std::to_string(i) + " has fold " + std::to_string(f) +
                      " outside [0, " + std::to_string(folds) + ")");
    std::vector<int> sample = labels[i];
    std::sort(sample.begin(), sample.end());
    sample.erase(std::unique(sample.begin(), sample.end()), sample.end());
    for (int c : sample)
      if (c >= 0 && c < num_classes) ++counts[static_cast<size_t>(f)][static_cast<size_t>(c)];
  }
  return counts;
}

std::vector<int64_t> fold_sizes(const std::vector<int>& fold_of, int folds) {
  std::vector<int64_t> sizes(static_cast<size_t>(std::max(folds, 0)), 0);
  for (int f : fold_of)
    if (f >= 0 && f < folds) ++sizes[static_cast<size_t>(f)];
  return sizes;
}

std::vector<std::vector<int>> label_lists(const std::vector<Sample>& samples) {
  std::vector<std::vector<int>> lists(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) lists[i] = samples[i].label_list();
  return lists;
}

std::vector<std::pair<std::string, std::string>> read_id_value_csv(const std::string& path,
                                                                   const std::string& column) {
  const std::string text = read_file_text(path);
  std::vector<std::pair<std::string, std::string>> rows;
  std::unordered_map<std::string, size_t> line_of_id;
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_number == 1) {
      if (line != "Id," + column)
        throw data_error(path, " line 1: header is '", line, "', expected 'Id,", column, "'");
      continue;
    }
    if (line.empty()) throw data_error(path, " line ", line_number, ": empty line");
    const size_t comma = line.find(',');
    if (comma == std::string_view::npos || line.find(',', comma + 1) != std::string_view::npos)
      throw data_error(path, " line ", line_number, ": expected 'id,", column, "', got '", line, "'");
    std::string id(line.substr(0, comma)), value(line.substr(comma + 1));
    if (id.empty() || value.empty()) throw data_error(path, " line ", line_number, ": empty id or ", column);
    auto [it, inserted] = line_of_id.try_emplace(id, line_number);
    if (!inserted)
      throw data_error(path, " line ", line_number, ": duplicate Id ", id, " (first on line ", it->second,
                       ")");
    rows.emplace_back(std::move(id), std::move(value));
  }
  if (line_number == 0) throw data_error(path, ": empty file (expected the header 'Id,", column, "')");
  return rows;
}

void write_id_value_csv(const std::string& path, const std::string& column,
                        const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string text = "Id," + column + "\n";
  for (const auto& [id, value] : rows) {
    text += id;
    text += ',';
    text += value;
    text += '\n';
  }
  write_file_atomic(path, std::string_view(text));
}

void write_folds_csv(const std::string& path, const std::vector<Sample>& samples,
                     const std::vector<int>& fold_of) {
  if (fold_of.size() != samples.size())
    throw data_error(path, ": ", fold_of.size(), " folds for ", samples.size(), " samples");
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) rows.emplace_back(samples[i].id, std::to_string(fold_of[i]));
  write_id_value_csv(path, "fold", rows);
}

namespace {

// id -> value for the samples, in sample order; a missing id is an error naming it.
std::vector<const std::string*> values_for(const std::string& path, const std::string& column,
                                           const std::vector<std::pair<std::string, std::string>>& rows,
                                           const std::vector<Sample>& samples) {
  std::unordered_map<std::string_view, const std::string*> by_id;
  for (const auto& [id, value] : rows) by_id.emplace(id, &value);
  std::vector<const std::string*> values(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto it = by_id.find(samples[i].id);
    if (it == by_id.end()) throw data_error(path, ": no ", column, " for sample ", samples[i].id);
    values[i] = it->second;
  }
  return values;
}

}  // namespace

std::vector<int> read_folds_csv(const std::string& path, const std::vector<Sample>& samples) {
  const auto rows = read_id_value_csv(path, "fold");
  const auto values = values_for(path, "fold", rows, samples);
  std::vector<int> folds(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::string& v = *values[i];
    int fold = -1;
    const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), fold);
    if (ec != std::errc() || ptr != v.data() + v.size() || fold < 0)
      throw data_error(path, ": sample ", samples[i].id, " has fold '", v, "', not a non-negative integer");
    folds[i] = fold;
  }
  return folds;
}

std::vector<int64_t> read_group_keys(const std::string& path, const std::vector<Sample>& samples) {
  const auto rows = read_id_value_csv(path, "group");
  const auto values = values_for(path, "group", rows, samples);
  std::unordered_map<std::string_view, int64_t> key_of;
  std::vector<int64_t> keys(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    auto [it, inserted] = key_of.try_emplace(*values[i], static_cast<int64_t>(key_of.size()));
    keys[i] = it->second;
  }
  return keys;
}

}  // namespace hpa::data
