#include <functional>
#include <utility>

#include "models/backbones.h"
#include "tensor/error.h"

namespace hpa {

namespace {
using Factory = std::function<ClassifierPtr(const ModelOptions&)>;

const std::vector<std::pair<std::string, Factory>>& registry() {
  static const std::vector<std::pair<std::string, Factory>> table = {
      {"resnet18", [](const ModelOptions& o) { return make_resnet(18, o); }},
      {"resnet34", [](const ModelOptions& o) { return make_resnet(34, o); }},
      {"resnet50", [](const ModelOptions& o) { return make_resnet(50, o); }},
      {"resnet101", [](const ModelOptions& o) { return make_resnet(101, o); }},
      {"resnet152", [](const ModelOptions& o) { return make_resnet(152, o); }},
      {"resnext50_32x4d", make_resnext50_32x4d},
      {"se_resnext50_32x4d", make_se_resnext50_32x4d},
      {"densenet121", [](const ModelOptions& o) { return make_densenet(121, o); }},
      {"densenet169", [](const ModelOptions& o) { return make_densenet(169, o); }},
      {"inception_v4", make_inception_v4},
      {"gapnet_pl", make_gapnet_pl},
  };
  return table;
}
}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& [name, f] : registry()) names.push_back(name);
  return names;
}

ClassifierPtr make_model(const std::string& name, const ModelOptions& options) {
  for (const auto& [n, f] : registry())
    if (n == name) return f(options);
  std::string known;
  for (const auto& n : model_names()) {
    if (!known.empty()) known += ", ";
    known += n;
  }
  HPA_FAIL("make_model: unknown model '", name, "' (known: ", known, ")");
}

}  // namespace hpa
