// GapNet-PL (Rumetshofer et al., "Human-level Protein Localization with Convolutional
// Neural Networks", ICLR 2019), as published:
//   block1  conv3x3 s2 (in -> 32), SELU, maxpool 2x2
//   block2  conv3x3 s2 (32 -> 64), SELU, 3 x [conv3x3 (64 -> 64), SELU], maxpool 2x2
//   block3  3 x [conv3x3 (-> 128), SELU]
//   global average of each block's output (after its max pool), concatenated:
//   32 + 64 + 128 = 224 features
//   classifier  FC 224 -> 256, SELU, AlphaDropout(0.3), FC 256 -> 256, SELU,
//               AlphaDropout(0.3), FC 256 -> classes
// Every conv has a bias and padding 1. Keys: block1.0.{weight,bias}, block2.{0,2,4,6}.*,
// block3.{0,2,4}.*, classifier.{0,3,6}.* (the SELU, pool and dropout children hold no
// parameters but keep their index, as in a PyTorch Sequential).
//
// Alpha-dropout placement: after the SELU of each hidden FC layer. Alpha-dropout sets
// dropped units to SELU's negative saturation value (-scale * alpha) and re-normalizes,
// which keeps the self-normalizing mean 0 / variance 1 only when it acts on SELU outputs;
// so it follows the activation. It is used in the fully connected part only (none on the
// convolutions or the pooled features), the placement public PyTorch ports of the GapNet
// family also use (Linear, SELU, AlphaDropout, ...).
//
// Initialization for SELU networks: LeCun normal (std sqrt(1 / fan_in)) for every conv
// and FC weight, biases 0.
//
// The model has its own head, so ModelOptions::head must be "gap" (meaning this published
// head) and no buffering layers may be given. The smallest valid input is 11x11
// (11 -> 6 -> 3 -> 2 -> 1).
#include "models/gapnet_pl.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/backbones.h"
#include "tensor/error.h"

namespace hpa {

namespace {

constexpr double kDropout = 0.3;
constexpr int kHidden = 256;
constexpr int kFeatures = 32 + 64 + 128;

class GapNetPL : public Classifier {
 public:
  explicit GapNetPL(const ModelOptions& options) {
    HPA_CHECK(options.head == "gap", "gapnet_pl: head '", options.head,
              "' is not supported: GapNet-PL has its own published head (concatenated block averages -> FC ",
              kHidden, " -> FC ", kHidden, " -> classes); use head 'gap'");
    HPA_CHECK(options.buffering.empty(), "gapnet_pl: buffering layers (", buffering_str(options.buffering),
              ") are not supported: GapNet-PL has its own published head");
    HPA_CHECK(options.in_channels > 0, "gapnet_pl: in_channels must be positive, got ", options.in_channels);
    HPA_CHECK(options.classes > 0, "gapnet_pl: classes must be positive, got ", options.classes);
    Generator gen(options.seed);
    auto conv = [&](int in, int out, int stride) {
      return std::make_shared<Conv2d>(Conv2dSpec::make(in, out, 3, stride, 1, 1, /*bias=*/true), gen);
    };
    auto selu = [] { return std::make_shared<SELU>(); };
    auto maxpool = [] { return std::make_shared<MaxPool2d>(Pool2dOptions::square(2, 2)); };

    auto b1 = std::make_shared<Sequential>();
    b1->add(conv(options.in_channels, 32, 2)).add(selu()).add(maxpool());
    auto b2 = std::make_shared<Sequential>();
    b2->add(conv(32, 64, 2)).add(selu());
    for (int i = 0; i < 3; ++i) b2->add(conv(64, 64, 1)).add(selu());
    b2->add(maxpool());
    auto b3 = std::make_shared<Sequential>();
    b3->add(conv(64, 128, 1)).add(selu());
    for (int i = 0; i < 2; ++i) b3->add(conv(128, 128, 1)).add(selu());
    auto head = std::make_shared<Sequential>();
    head->add(std::make_shared<Linear>(kFeatures, kHidden, gen)).add(selu());
    head->add(std::make_shared<Dropout>(kDropout, /*alpha=*/true, options.dropout_gen));
    head->add(std::make_shared<Linear>(kHidden, kHidden, gen)).add(selu());
    head->add(std::make_shared<Dropout>(kDropout, /*alpha=*/true, options.dropout_gen));
    head->add(std::make_shared<Linear>(kHidden, options.classes, gen));

    block1_ = register_module("block1", b1);
    block2_ = register_module("block2", b2);
    block3_ = register_module("block3", b3);
    pool_ = register_module("pool", std::make_shared<GlobalAvgPool2d>());
    flatten_ = register_module("flatten", std::make_shared<Flatten>());
    classifier_ = register_module("classifier", head);

    for (auto& [name, m] : named_modules()) {
      if (auto* c = dynamic_cast<Conv2d*>(m)) {
        init_lecun_normal(c->weight(), gen);
        for (auto& [pname, t] : c->named_parameters())
          if (pname == "bias") init_constant(t, 0.0);
      } else if (auto* fc = dynamic_cast<Linear*>(m)) {
        init_lecun_normal(fc->weight(), gen);
        init_constant(fc->bias(), 0.0);
      }
    }
  }

  Tensor forward(const Tensor& x) override {
    HPA_CHECK(x.dim() == 4 && x.size(2) >= 11 && x.size(3) >= 11,
              "gapnet_pl: expected an NCHW input of at least 11x11, got ", x.shape());
    const Tensor h1 = (*block1_)(x);
    const Tensor h2 = (*block2_)(h1);
    const Tensor h3 = (*block3_)(h2);
    const Tensor pooled = concat({(*pool_)(h1), (*pool_)(h2), (*pool_)(h3)}, 1);
    return (*classifier_)((*flatten_)(pooled));
  }
  std::string type_name() const override { return "GapNetPL"; }
  std::string stem_key() const override { return "block1.0.weight"; }
  std::string head_name() const override { return "classifier"; }
  int feature_channels() const override { return kFeatures; }

 private:
  ModulePtr block1_, block2_, block3_, pool_, flatten_, classifier_;
};

void collect_weights(const Module& m, std::vector<Tensor>& out) {
  if (dynamic_cast<const Conv2d*>(&m) != nullptr || dynamic_cast<const Linear*>(&m) != nullptr) {
    // A leaf layer: its own parameters are "weight" and possibly "bias".
    for (const auto& [name, t] : m.named_parameters())
      if (name == "weight") out.push_back(t);
  }
  for (const auto& [name, child] : m.children()) collect_weights(*child, out);
}

}  // namespace

ClassifierPtr make_gapnet_pl(const ModelOptions& options) { return std::make_shared<GapNetPL>(options); }

Tensor weight_penalty(const Module& m, double l1, double l2) {
  HPA_CHECK(std::isfinite(l1) && std::isfinite(l2) && l1 >= 0.0 && l2 >= 0.0,
            "weight_penalty: l1 and l2 must be finite and >= 0, got l1=", l1, " l2=", l2);
  std::vector<Tensor> weights;
  collect_weights(m, weights);
  if (weights.empty()) return Tensor::scalar(0.0);
  if (l1 == 0.0 && l2 == 0.0) return Tensor::scalar(0.0, weights[0].dtype(), weights[0].device());
  Tensor total;
  auto accumulate = [&](const Tensor& term) { total = total.defined() ? add(total, term) : term; };
  for (const Tensor& w : weights) {
    if (l1 != 0.0) accumulate(mul_scalar(sum(add(relu(w), relu(neg(w)))), l1));
    if (l2 != 0.0) accumulate(mul_scalar(sum(mul(w, w)), l2));
  }
  return total;
}

}  // namespace hpa
