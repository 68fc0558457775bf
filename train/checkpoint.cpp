// Training checkpoints over safetensors (see checkpoint.h for the layout and the rules).
#include "train/checkpoint.h"

#include <charconv>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tensor/safetensors.h"

namespace hpa {

namespace {

constexpr const char* kFormatName = "hpa-checkpoint";
constexpr const char* kModelPrefix = "model.";
constexpr const char* kMomentumPrefix = "optim.momentum.";
constexpr const char* kReservedPrefix = "hpa.";
constexpr const char* kFormatKey = "hpa.format";
constexpr const char* kVersionKey = "hpa.format_version";
constexpr const char* kStepsKey = "hpa.steps";
constexpr const char* kEpochKey = "hpa.epoch";
constexpr const char* kSeedKey = "hpa.rng_seed";
constexpr const char* kOffsetKey = "hpa.rng_offset";

template <class... Parts>
[[noreturn]] void fail(const char* op, const std::string& path, const Parts&... parts) {
  HPA_FAIL(op, ": ", path, ": ", parts...);
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// A whole-string decimal integer of type T from the metadata, or an error naming the key.
template <class T>
T metadata_int(const char* op, const std::string& path, const SafetensorsMetadata& meta, const char* key) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(op, path, "metadata key '", key, "' is missing");
  const std::string& s = it->second;
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    fail(op, path, "metadata key '", key, "' holds '", s, "', expected an integer");
  return value;
}

CheckpointInfo info_from_metadata(const char* op, const std::string& path, const SafetensorsMetadata& meta) {
  auto format = meta.find(kFormatKey);
  if (format == meta.end() || format->second != kFormatName)
    fail(op, path, "not an hpa training checkpoint (metadata '", kFormatKey, "' is ",
         format == meta.end() ? std::string("missing") : "'" + format->second + "'", ", expected '",
         kFormatName, "')");
  const int version = metadata_int<int>(op, path, meta, kVersionKey);
  if (version != kCheckpointFormatVersion)
    fail(op, path, "checkpoint format version ", version, ", this build reads version ",
         kCheckpointFormatVersion);
  CheckpointInfo info;
  info.steps = metadata_int<int64_t>(op, path, meta, kStepsKey);
  info.epoch = metadata_int<int64_t>(op, path, meta, kEpochKey);
  info.rng_seed = metadata_int<uint64_t>(op, path, meta, kSeedKey);
  info.rng_offset = metadata_int<uint64_t>(op, path, meta, kOffsetKey);
  if (info.steps < 0) fail(op, path, "metadata key '", kStepsKey, "' is negative (", info.steps, ")");
  for (const auto& [k, v] : meta)
    if (!starts_with(k, kReservedPrefix)) info.fields.emplace(k, v);
  return info;
}

// The model's name for parameter i of optimizer group g, for every (g, i): the optimizer's
// tensors are found among the model's parameters by identity.
std::vector<std::vector<std::string>> optimizer_parameter_names(const char* op, const std::string& path,
                                                                const Module& model, const SGD& sgd) {
  std::unordered_map<const TensorImpl*, std::string> by_impl;
  for (const auto& [name, t] : model.named_parameters()) by_impl.emplace(t.impl_ptr().get(), name);
  std::unordered_map<std::string, std::pair<size_t, size_t>> used;
  std::vector<std::vector<std::string>> names;
  const auto& groups = sgd.groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    names.emplace_back();
    for (size_t i = 0; i < groups[g].params.size(); ++i) {
      const Tensor& p = groups[g].params[i];
      auto it = by_impl.find(p.impl_ptr().get());
      if (it == by_impl.end())
        fail(op, path, "optimizer group '", groups[g].name, "' parameter ", i, " (", p.desc(),
             ") is not a parameter of the model (build the optimizer over this model's parameters)");
      if (!used.emplace(it->second, std::make_pair(g, i)).second)
        fail(op, path, "parameter '", it->second, "' appears twice in the optimizer's groups");
      names.back().push_back(it->second);
    }
  }
  return names;
}

// "f32[3, 100]" for messages.
std::string type_and_shape(const Tensor& t) { return dtype_name(t.dtype()) + t.shape().str(); }

std::string join_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) s += ", ";
    s += keys[i];
  }
  return s;
}

}  // namespace

void save_checkpoint(const std::string& path, const Module& model, const SGD& sgd, int64_t epoch,
                     const Generator& gen, const std::map<std::string, std::string>& fields) {
  constexpr const char* op = "save_checkpoint";
  NamedTensors tensors;
  for (auto& [key, t] : model.state_dict()) tensors.emplace_back(kModelPrefix + key, t);
  const auto names = optimizer_parameter_names(op, path, model, sgd);
  for (size_t g = 0; g < names.size(); ++g)
    for (size_t i = 0; i < names[g].size(); ++i) {
      const Tensor& v = sgd.momentum_buffer(g, i);
      if (v.defined()) tensors.emplace_back(kMomentumPrefix + names[g][i], v);
    }

  SafetensorsMetadata meta;
  for (const auto& [k, v] : fields) {
    if (starts_with(k, kReservedPrefix))
      fail(op, path, "field '", k, "': names starting with '", kReservedPrefix,
           "' are reserved for the format");
    meta.emplace(k, v);
  }
  meta[kFormatKey] = kFormatName;
  meta[kVersionKey] = std::to_string(kCheckpointFormatVersion);
  meta[kStepsKey] = std::to_string(sgd.steps());
  meta[kEpochKey] = std::to_string(epoch);
  meta[kSeedKey] = std::to_string(gen.seed());
  meta[kOffsetKey] = std::to_string(gen.offset());
  save_safetensors(path, tensors, meta);
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  return info_from_metadata("read_checkpoint_info", path, read_safetensors_header(path).metadata);
}

CheckpointInfo load_checkpoint(const std::string& path, Module& model, SGD& sgd, Generator& gen) {
  constexpr const char* op = "load_checkpoint";
  SafetensorsMetadata meta;
  NamedTensors tensors = load_safetensors(path, &meta);
  const CheckpointInfo info = info_from_metadata(op, path, meta);

  // Sort the file's keys into the model's state and the optimizer's buffers.
  const auto names = optimizer_parameter_names(op, path, model, sgd);
  std::unordered_map<std::string, std::pair<size_t, size_t>> slot;
  for (size_t g = 0; g < names.size(); ++g)
    for (size_t i = 0; i < names[g].size(); ++i) slot.emplace(names[g][i], std::make_pair(g, i));
  // Every key must land somewhere, every model entry must be given, shapes must agree:
  // checked in full before anything is changed, and reported in one message.
  std::unordered_map<std::string, Tensor> model_entries;
  for (const auto& [key, t] : model.state_dict()) model_entries.emplace(key, t);
  NamedTensors model_state;
  std::unordered_map<std::string, Tensor> momentum;
  std::vector<std::string> missing, unexpected, mismatched;
  auto describe = [](const std::string& key, const Tensor& file, const char* what, const Tensor& have) {
    return key + " (file " + type_and_shape(file) + ", " + what + " " + type_and_shape(have) + ")";
  };
  for (auto& [key, t] : tensors) {
    if (starts_with(key, kModelPrefix)) {
      const std::string name = key.substr(std::char_traits<char>::length(kModelPrefix));
      auto it = model_entries.find(name);
      if (it == model_entries.end()) {
        unexpected.push_back(key);
        continue;
      }
      if (t.shape() != it->second.shape() || is_floating(t.dtype()) != is_floating(it->second.dtype()))
        mismatched.push_back(describe(key, t, "model", it->second));
      model_state.emplace_back(name, t);
    } else if (starts_with(key, kMomentumPrefix)) {
      const std::string name = key.substr(std::char_traits<char>::length(kMomentumPrefix));
      auto it = slot.find(name);
      if (it == slot.end()) {
        unexpected.push_back(key + " (not a parameter of the optimizer)");
        continue;
      }
      const Tensor& p = sgd.groups()[it->second.first].params[it->second.second];
      if (t.shape() != p.shape() || !is_floating(t.dtype()))
        mismatched.push_back(describe(key, t, "parameter", p));
      momentum.emplace(name, t);
    } else {
      unexpected.push_back(key);
    }
  }
  std::unordered_set<std::string> given;
  for (const auto& [name, t] : model_state) given.insert(name);
  for (const auto& [key, t] : model.state_dict())
    if (!given.count(key)) missing.push_back(kModelPrefix + key);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string report;
    auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      if (!report.empty()) report += "; ";
      report += std::to_string(keys.size()) + " " + what + ": " + join_keys(keys);
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    fail(op, path, "the checkpoint does not match the model and optimizer: ", report);
  }

  try {
    model.load_state_dict(model_state, /*strict=*/true);
  } catch (const Error& e) {
    fail(op, path, e.what());
  }
  for (size_t g = 0; g < names.size(); ++g)
    for (size_t i = 0; i < names[g].size(); ++i) {
      auto it = momentum.find(names[g][i]);
      if (it == momentum.end()) {
        sgd.set_momentum_buffer(g, i, Tensor());
        continue;
      }
      const Tensor& p = sgd.groups()[g].params[i];
      Tensor v = it->second;
      if (v.dtype() != p.dtype()) v = v.to(p.dtype());
      if (v.device() != p.device()) v = v.to(p.device());
      sgd.set_momentum_buffer(g, i, v);
    }
  sgd.set_steps(info.steps);
  gen.set_state(info.rng_seed, info.rng_offset);
  return info;
}

}  // namespace hpa
