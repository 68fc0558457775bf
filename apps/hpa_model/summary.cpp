// hpa_model summary: one eval-mode forward of batch 1 under NoGradGuard with a
// LayerRecorder (layers/module.h) active, printed as a layer table and totals.
//
// Rows are the recorded calls of leaf layers -- modules without children -- plus
// SqueezeExcite (whose own cost, the gating multiply, is not in its children), in call
// order. A module called several times (torchvision's ResNet blocks call one ReLU up to
// three times) gives one row per call. A row's parameters are the module's own (not its
// children's), so for SqueezeExcite they are 0 and its fc1/fc2 rows carry theirs.
// The totals are: parameters = Module::parameter_count() of the whole model; FLOPs = the
// sum of Module::flops over every recorded call (composite modules report 0, see
// module.h); activation bytes = the sum of the output sizes of the leaf rows.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/hpa_model/commands.h"
#include "apps/common/json.h"
#include "apps/common/model_flags.h"
#include "tensor/autograd.h"

namespace hpa::cli {

namespace {

// "3x224x224" -> {3, 224, 224}.
std::vector<int64_t> parse_chw(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, 'x')) {
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || v <= 0 || v > 65536)
      throw usage_error("--input '", s, "': '", item,
                        "' is not a size in [1, 65536] (expected CxHxW, e.g. 4x512x512)");
    dims.push_back(v);
  }
  if (dims.size() != 3 || s.back() == 'x')
    throw usage_error("--input '", s, "' is not CxHxW (three sizes, e.g. 4x512x512)");
  return dims;
}

// 25557032 -> "25,557,032".
std::string grouped(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

struct Row {
  std::string name, type;
  Shape output;
  int64_t params = 0;
  double flops = 0;
};

int64_t own_parameter_count(const Module& m) {
  int64_t n = m.parameter_count();
  for (const auto& [name, child] : m.children()) n -= child->parameter_count();
  return n;
}

}  // namespace

int summary(int argc, char** argv) {
  Args args(argc, argv, {"json"});
  if (args.help()) {
    std::printf(
        "usage: hpa_model summary --model M --input CxHxW --classes K --head gap|acp [--buffering S]\n"
        "                         [--dtype f32|f64] [--json]\n"
        "  Builds model M for C input channels and K classes with the given head (gap: global average\n"
        "  pooling + linear; acp: adaptive concat pooling + the buffering layers S, e.g. \"1024:0.5\",\n"
        "  + BN + linear; see models/classifier.h), runs one eval-mode forward of one CxHxW image\n"
        "  without autograd, and prints every leaf layer (a module without children, plus\n"
        "  squeeze-excite) with its qualified state_dict name, type, output shape, own parameters and\n"
        "  FLOPs, in call order (a module called twice gives two rows).\n"
        "  Totals:\n"
        "    parameters  every parameter of the model (buffers such as BN running stats excluded)\n"
        "    FLOPs       2 x multiply-adds of the convolutions and linear layers (biases, BN, activations,\n"
        "                pooling and additions not counted), plus one per element for the squeeze-excite\n"
        "                gating multiply; for batch 1, so per image\n"
        "    activation  the sum of the output sizes of the leaf-layer calls at the model's dtype, per\n"
        "    memory      image: what a training step keeps for backward, roughly (in-place ops and the\n"
        "                outputs that autograd does not save are not distinguished)\n"
        "  --json prints one JSON object: model, head, buffering, classes, dtype, input [C,H,W], params,\n"
        "  flops, activation_bytes and layers [{name, type, output, params, flops}].\n"
        "  models: %s\n",
        known_models().c_str());
    return 0;
  }
  ModelFlags flags = read_model_flags(args, "", 0);
  const std::vector<int64_t> chw = parse_chw(args.required("input"));
  const DType dtype = read_dtype_flag(args, "f32");
  const bool json = args.flag("json");
  args.finish();

  flags.options.in_channels = static_cast<int>(chw[0]);
  ClassifierPtr model = make_model(flags.name, flags.options);
  model->to(dtype);
  model->eval();
  std::map<const Module*, std::string> name_of;
  for (const auto& [name, m] : model->named_modules()) name_of.emplace(m, name);

  Generator gen(1);
  const Tensor x = Tensor::rand({1, chw[0], chw[1], chw[2]}, dtype, Device::cpu(), &gen);
  std::vector<Row> rows;
  double total_flops = 0;
  int64_t activation_bytes = 0;
  Shape out_shape;
  {
    NoGradGuard no_grad;
    LayerRecorder recorder;
    out_shape = (*model)(x).shape();
    for (const LayerRecord& r : recorder.records()) {
      total_flops += r.flops;
      const bool leaf =
          r.module->children().empty() || dynamic_cast<const SqueezeExcite*>(r.module) != nullptr;
      if (!leaf) continue;
      const auto it = name_of.find(r.module);
      rows.push_back({it == name_of.end() ? "(unnamed)" : it->second, r.module->type_name(), r.output,
                      own_parameter_count(*r.module), r.flops});
      activation_bytes += r.output.numel() * static_cast<int64_t>(dtype_size(dtype));
    }
  }
  HPA_CHECK(out_shape == Shape({1, flags.options.classes}), flags.name, " returned ", out_shape,
            " for input [1, ", chw[0], ", ", chw[1], ", ", chw[2], "], expected [1, ", flags.options.classes,
            "]");
  const int64_t params = model->parameter_count();

  if (json) {
    std::vector<std::string> layers;
    for (const Row& r : rows)
      layers.push_back(JsonObject()
                           .str("name", r.name)
                           .str("type", r.type)
                           .raw("output", json_int_array(r.output.vec()))
                           .integer("params", r.params)
                           .num("flops", r.flops)
                           .dump());
    std::printf("%s\n", JsonObject()
                            .str("model", flags.name)
                            .str("head", flags.options.head)
                            .str("buffering", buffering_str(flags.options.buffering))
                            .integer("classes", flags.options.classes)
                            .str("dtype", dtype_name(dtype))
                            .raw("input", json_int_array(chw))
                            .integer("params", params)
                            .num("flops", total_flops)
                            .integer("activation_bytes", activation_bytes)
                            .raw("layers", json_array(layers))
                            .dump()
                            .c_str());
    return 0;
  }

  size_t name_w = 5, type_w = 4;
  for (const Row& r : rows) {
    name_w = std::max(name_w, r.name.size());
    type_w = std::max(type_w, r.type.size());
  }
  const int nw = static_cast<int>(name_w), tw = static_cast<int>(type_w);
  std::printf("%s: input %lldx%lldx%lld, head %s (buffering %s), %d classes, %s, eval mode, batch 1\n\n",
              flags.name.c_str(), static_cast<long long>(chw[0]), static_cast<long long>(chw[1]),
              static_cast<long long>(chw[2]), flags.options.head.c_str(),
              buffering_str(flags.options.buffering).c_str(), flags.options.classes, dtype_name(dtype));
  std::printf("%-*s  %-*s  %-18s %12s %12s\n", nw, "layer", tw, "type", "output", "params", "MFLOPs");
  for (const Row& r : rows)
    std::printf("%-*s  %-*s  %-18s %12s %12.3f\n", nw, r.name.c_str(), tw, r.type.c_str(),
                shape_str(r.output).c_str(), grouped(r.params).c_str(), r.flops / 1e6);
  std::printf("\nleaf layer calls:  %zu\n", rows.size());
  std::printf("parameters:        %s\n", grouped(params).c_str());
  std::printf("forward:           %.3f GFLOPs (2 x multiply-adds of conv and linear, plus SE gating)\n",
              total_flops / 1e9);
  std::printf("activation memory: %.2f MiB per image (leaf-layer outputs, %s)\n",
              static_cast<double>(activation_bytes) / (1024.0 * 1024.0), dtype_name(dtype));
  return 0;
}

}  // namespace hpa::cli
