#include "models/classifier.h"

#include <cstdlib>
#include <map>
#include <sstream>

#include "tensor/error.h"

namespace hpa {

std::vector<BufferingLayer> parse_buffering(const std::string& spec) {
  std::vector<BufferingLayer> out;
  if (spec.empty() || spec == "none") return out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    HPA_CHECK(colon != std::string::npos, "buffering layers '", spec, "': item '", item,
              "' is not UNITS:DROPOUT (e.g. 1024:0.5)");
    const std::string u = item.substr(0, colon), p = item.substr(colon + 1);
    char* end = nullptr;
    const long units = std::strtol(u.c_str(), &end, 10);
    HPA_CHECK(!u.empty() && *end == '\0' && units > 0 && units <= (1 << 20), "buffering layers '", spec,
              "': bad unit count '", u, "' in '", item, "'");
    const double drop = std::strtod(p.c_str(), &end);
    HPA_CHECK(!p.empty() && *end == '\0' && drop >= 0.0 && drop < 1.0, "buffering layers '", spec,
              "': dropout '", p, "' in '", item, "' must be in [0, 1)");
    out.push_back({static_cast<int>(units), drop});
  }
  return out;
}

std::string buffering_str(const std::vector<BufferingLayer>& layers) {
  if (layers.empty()) return "none";
  std::string s;
  for (const auto& l : layers) {
    if (!s.empty()) s += ',';
    s += detail::concat(l.units, ':', l.dropout);
  }
  return s;
}

std::vector<std::pair<std::string, std::vector<Tensor>>> Classifier::parameter_groups() const {
  const std::string head = head_name() + ".";
  std::vector<Tensor> encoder, head_params;
  for (const auto& [name, t] : named_parameters()) {
    (name.compare(0, head.size(), head) == 0 ? head_params : encoder).push_back(t);
  }
  return {{"encoder", std::move(encoder)}, {"head", std::move(head_params)}};
}

ModulePtr make_head_pool(const ModelOptions& options) {
  if (options.head == "gap") return std::make_shared<GlobalAvgPool2d>();
  if (options.head == "acp") return std::make_shared<AdaptiveConcatPool2d>();
  HPA_FAIL("model head '", options.head, "' is unknown (known: gap, acp)");
}

ModulePtr make_head(int channels, const ModelOptions& options, Generator& gen) {
  HPA_CHECK(options.classes > 0, "model head: classes must be positive, got ", options.classes);
  if (options.head == "gap") {
    HPA_CHECK(options.buffering.empty(), "model head 'gap' takes no buffering layers (got ",
              buffering_str(options.buffering), "); use head 'acp'");
    return std::make_shared<Linear>(channels, options.classes, gen);
  }
  HPA_CHECK(options.head == "acp", "model head '", options.head, "' is unknown (known: gap, acp)");
  auto seq = std::make_shared<Sequential>();
  int in = 2 * channels;
  for (const auto& l : options.buffering) {
    seq->add(make_bn1d(in));
    seq->add(std::make_shared<Dropout>(l.dropout, false, options.dropout_gen));
    seq->add(std::make_shared<Linear>(in, l.units, gen));
    seq->add(std::make_shared<ReLU>());
    in = l.units;
  }
  seq->add(make_bn1d(in));
  seq->add(std::make_shared<Linear>(in, options.classes, gen));
  return seq;
}

std::string load_pretrained(Classifier& model, const NamedTensors& state, StemFill fill) {
  std::map<std::string, Tensor> own;
  for (const auto& [name, t] : model.state_dict()) own.emplace(name, t);
  const std::string stem = model.stem_key();
  const std::string head = model.head_name() + ".";
  auto in_head = [&](const std::string& k) { return k.compare(0, head.size(), head) == 0; };

  NamedTensors adapted;
  std::vector<std::string> skipped;
  std::string stem_note;
  for (const auto& [name, t] : state) {
    auto it = own.find(name);
    if (in_head(name) && (it == own.end() || it->second.shape() != t.shape())) {
      skipped.push_back(name);
      continue;
    }
    if (name == stem && it != own.end() && t.dim() == 4 && it->second.dim() == 4 && t.size(1) == 3 &&
        it->second.size(1) > 3 && t.size(0) == it->second.size(0) && t.size(2) == it->second.size(2) &&
        t.size(3) == it->second.size(3)) {
      // Widen [O, 3, kh, kw] to [O, C, kh, kw] on the host in double.
      NoGradGuard ng;
      Tensor src = t.to(Device::cpu()).to(DType::f64);
      const int64_t o = t.size(0), c = it->second.size(1), k = t.size(2) * t.size(3);
      Tensor dst = Tensor::empty({o, c, t.size(2), t.size(3)}, DType::f64);
      const double* s = src.data<double>();
      double* d = dst.data<double>();
      for (int64_t oi = 0; oi < o; ++oi)
        for (int64_t ci = 0; ci < c; ++ci)
          for (int64_t i = 0; i < k; ++i) {
            const double* so = s + oi * 3 * k;
            d[(oi * c + ci) * k + i] = ci < 3 ? so[ci * k + i]
                                       : fill == StemFill::copy_red
                                           ? so[i]
                                           : (so[i] + so[k + i] + so[2 * k + i]) / 3.0;
          }
      adapted.emplace_back(name, dst);
      stem_note = "stem " + name + " widened from 3 to " + std::to_string(c) + " channels (" +
                  (fill == StemFill::copy_red ? "extra channels copy red" : "extra channels = mean of RGB") + ")";
      continue;
    }
    adapted.emplace_back(name, t);
  }
  // Head keys the file lacks stay fresh: add the model's own values so strict loading
  // reports only real problems.
  std::map<std::string, bool> given;
  for (const auto& [name, t] : adapted) given[name] = true;
  int fresh = 0;
  for (const auto& [name, t] : own)
    if (in_head(name) && !given.count(name)) {
      adapted.emplace_back(name, t.clone());
      ++fresh;
    }
  model.load_state_dict(adapted, /*strict=*/true);
  std::string report = stem_note.empty() ? "stem loaded as is" : stem_note;
  report += "; head '" + model.head_name() + "': " + std::to_string(fresh) + " tensors left fresh";
  if (!skipped.empty()) report += ", " + std::to_string(skipped.size()) + " pretrained head tensors skipped";
  return report;
}

}  // namespace hpa
