// timm's inception_v4 (Szegedy et al. 2017, "Inception-v4, Inception-ResNet and the Impact
// of Residual Connections"), with timm's module tree and state_dict keys:
//   features.0..21   0-2 stem BasicConv2d, 3 Mixed3a, 4 Mixed4a, 5 Mixed5a, 6-9 InceptionA,
//                    10 ReductionA, 11-17 InceptionB, 18 ReductionB, 19-21 InceptionC
//   global_pool      (make_head_pool; no parameters)
//   last_linear      (the head: Linear(1536, classes) for gap, the acp Sequential otherwise)
// A BasicConv2d is conv (no bias) -> bn (eps 0.001) -> ReLU with children conv, bn, relu.
// The branch children are named as timm's (branch0, branch1, ...; Mixed3a: maxpool, conv;
// Mixed5a: conv, maxpool; InceptionC's split branches branch1_0, branch1_1a, ...), and
// each block concatenates its branches along channels in branch order.
//
// Unpadded stride-2 reductions: the smallest input that reaches the head is 75x75
// (75 -> 37 -> 35 -> 35 -> 17 -> 15 -> 7 -> 3 -> 1); 299x299 gives an 8x8 final map.
// The InceptionA/B/C pooling branches average over the valid pixels only
// (count_include_pad false), as timm.
//
// Initialization: PyTorch's defaults (timm's inception_v4 does not re-initialize).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/backbones.h"
#include "tensor/error.h"

namespace hpa {

namespace {

class BasicConv2d : public Module {
 public:
  BasicConv2d(int in, int out, int kh, int kw, int stride, int pad_h, int pad_w, Generator& gen) {
    Conv2dSpec spec;
    spec.in = in, spec.out = out, spec.kernel_h = kh, spec.kernel_w = kw, spec.bias = false;
    spec.options.stride_h = spec.options.stride_w = stride;
    spec.options.pad_h = pad_h;
    spec.options.pad_w = pad_w;
    conv_ = register_module("conv", std::make_shared<Conv2d>(spec, gen));
    bn_ = register_module("bn", make_bn2d(out, 0.001));
    relu_ = register_module("relu", std::make_shared<ReLU>());
  }
  Tensor forward(const Tensor& x) override { return (*relu_)((*bn_)((*conv_)(x))); }
  std::string type_name() const override { return "BasicConv2d"; }

 private:
  ModulePtr conv_, bn_, relu_;
};

// Square kernel k, stride s, padding p.
ModulePtr conv(int in, int out, int k, int s, int p, Generator& gen) {
  return std::make_shared<BasicConv2d>(in, out, k, k, s, p, p, gen);
}
// 1x7 (0, 3 padding) and 7x1 (3, 0 padding), and the 1x3 / 3x1 of InceptionC.
ModulePtr conv_1xk(int in, int out, int k, Generator& gen) {
  return std::make_shared<BasicConv2d>(in, out, 1, k, 1, 0, k / 2, gen);
}
ModulePtr conv_kx1(int in, int out, int k, Generator& gen) {
  return std::make_shared<BasicConv2d>(in, out, k, 1, 1, k / 2, 0, gen);
}
ModulePtr seq(std::vector<ModulePtr> modules) { return std::make_shared<Sequential>(std::move(modules)); }
ModulePtr max_pool_3s2() { return std::make_shared<MaxPool2d>(Pool2dOptions::square(3, 2)); }
ModulePtr avg_pool_3s1() {
  Pool2dOptions o = Pool2dOptions::square(3, 1, 1);
  o.count_include_pad = false;
  return std::make_shared<AvgPool2d>(o);
}

using Named = std::vector<std::pair<std::string, ModulePtr>>;

// A block whose branches all read the block input and whose output is their
// concatenation in registration order (every block except InceptionC).
class Branches : public Module {
 public:
  Branches(std::string type, Named branches) : type_(std::move(type)) {
    for (auto& [name, m] : branches) branches_.push_back(register_module(name, m));
  }
  Tensor forward(const Tensor& x) override {
    std::vector<Tensor> outs;
    outs.reserve(branches_.size());
    for (const auto& b : branches_) outs.push_back((*b)(x));
    return concat(outs, 1);
  }
  std::string type_name() const override { return type_; }

 private:
  std::string type_;
  std::vector<ModulePtr> branches_;
};

ModulePtr mixed_3a(Generator& gen) {  // 64 -> 64 + 96 = 160
  auto maxpool = max_pool_3s2();
  return std::make_shared<Branches>("Mixed3a",
                                    Named{{"maxpool", maxpool}, {"conv", conv(64, 96, 3, 2, 0, gen)}});
}

ModulePtr mixed_4a(Generator& gen) {  // 160 -> 96 + 96 = 192
  auto b0 = seq({conv(160, 64, 1, 1, 0, gen), conv(64, 96, 3, 1, 0, gen)});
  auto b1 = seq({conv(160, 64, 1, 1, 0, gen), conv_1xk(64, 64, 7, gen), conv_kx1(64, 64, 7, gen),
                 conv(64, 96, 3, 1, 0, gen)});
  return std::make_shared<Branches>("Mixed4a", Named{{"branch0", b0}, {"branch1", b1}});
}

ModulePtr mixed_5a(Generator& gen) {  // 192 -> 192 + 192 = 384
  auto c = conv(192, 192, 3, 2, 0, gen);
  return std::make_shared<Branches>("Mixed5a", Named{{"conv", c}, {"maxpool", max_pool_3s2()}});
}

ModulePtr inception_a(Generator& gen) {  // 384 -> 96 * 4
  auto b0 = conv(384, 96, 1, 1, 0, gen);
  auto b1 = seq({conv(384, 64, 1, 1, 0, gen), conv(64, 96, 3, 1, 1, gen)});
  auto b2 = seq({conv(384, 64, 1, 1, 0, gen), conv(64, 96, 3, 1, 1, gen), conv(96, 96, 3, 1, 1, gen)});
  auto b3 = seq({avg_pool_3s1(), conv(384, 96, 1, 1, 0, gen)});
  return std::make_shared<Branches>(
      "InceptionA", Named{{"branch0", b0}, {"branch1", b1}, {"branch2", b2}, {"branch3", b3}});
}

ModulePtr reduction_a(Generator& gen) {  // 384 -> 384 + 256 + 384 = 1024
  auto b0 = conv(384, 384, 3, 2, 0, gen);
  auto b1 = seq({conv(384, 192, 1, 1, 0, gen), conv(192, 224, 3, 1, 1, gen), conv(224, 256, 3, 2, 0, gen)});
  return std::make_shared<Branches>("ReductionA",
                                    Named{{"branch0", b0}, {"branch1", b1}, {"branch2", max_pool_3s2()}});
}

ModulePtr inception_b(Generator& gen) {  // 1024 -> 384 + 256 + 256 + 128 = 1024
  auto b0 = conv(1024, 384, 1, 1, 0, gen);
  auto b1 = seq({conv(1024, 192, 1, 1, 0, gen), conv_1xk(192, 224, 7, gen), conv_kx1(224, 256, 7, gen)});
  auto b2 = seq({conv(1024, 192, 1, 1, 0, gen), conv_kx1(192, 192, 7, gen), conv_1xk(192, 224, 7, gen),
                 conv_kx1(224, 224, 7, gen), conv_1xk(224, 256, 7, gen)});
  auto b3 = seq({avg_pool_3s1(), conv(1024, 128, 1, 1, 0, gen)});
  return std::make_shared<Branches>(
      "InceptionB", Named{{"branch0", b0}, {"branch1", b1}, {"branch2", b2}, {"branch3", b3}});
}

ModulePtr reduction_b(Generator& gen) {  // 1024 -> 192 + 320 + 1024 = 1536
  auto b0 = seq({conv(1024, 192, 1, 1, 0, gen), conv(192, 192, 3, 2, 0, gen)});
  auto b1 = seq({conv(1024, 256, 1, 1, 0, gen), conv_1xk(256, 256, 7, gen), conv_kx1(256, 320, 7, gen),
                 conv(320, 320, 3, 2, 0, gen)});
  return std::make_shared<Branches>("ReductionB",
                                    Named{{"branch0", b0}, {"branch1", b1}, {"branch2", max_pool_3s2()}});
}

// 1536 -> 256 + (256 + 256) + (256 + 256) + 256 = 1536. Branches 1 and 2 fork at the end:
// two convolutions read the same tensor and their outputs are concatenated.
class InceptionC : public Module {
 public:
  explicit InceptionC(Generator& gen) {
    b0_ = register_module("branch0", conv(1536, 256, 1, 1, 0, gen));
    b1_0_ = register_module("branch1_0", conv(1536, 384, 1, 1, 0, gen));
    b1_1a_ = register_module("branch1_1a", conv_1xk(384, 256, 3, gen));
    b1_1b_ = register_module("branch1_1b", conv_kx1(384, 256, 3, gen));
    b2_0_ = register_module("branch2_0", conv(1536, 384, 1, 1, 0, gen));
    b2_1_ = register_module("branch2_1", conv_kx1(384, 448, 3, gen));
    b2_2_ = register_module("branch2_2", conv_1xk(448, 512, 3, gen));
    b2_3a_ = register_module("branch2_3a", conv_1xk(512, 256, 3, gen));
    b2_3b_ = register_module("branch2_3b", conv_kx1(512, 256, 3, gen));
    b3_ = register_module("branch3", seq({avg_pool_3s1(), conv(1536, 256, 1, 1, 0, gen)}));
  }
  Tensor forward(const Tensor& x) override {
    const Tensor x0 = (*b0_)(x);
    const Tensor x1_0 = (*b1_0_)(x);
    const Tensor x1 = concat({(*b1_1a_)(x1_0), (*b1_1b_)(x1_0)}, 1);
    const Tensor x2_2 = (*b2_2_)((*b2_1_)((*b2_0_)(x)));
    const Tensor x2 = concat({(*b2_3a_)(x2_2), (*b2_3b_)(x2_2)}, 1);
    const Tensor x3 = (*b3_)(x);
    return concat({x0, x1, x2, x3}, 1);
  }
  std::string type_name() const override { return "InceptionC"; }

 private:
  ModulePtr b0_, b1_0_, b1_1a_, b1_1b_, b2_0_, b2_1_, b2_2_, b2_3a_, b2_3b_, b3_;
};

constexpr int kFeatures = 1536;

class InceptionV4 : public Classifier {
 public:
  explicit InceptionV4(const ModelOptions& options) {
    HPA_CHECK(options.in_channels > 0, "inception_v4: in_channels must be positive, got ",
              options.in_channels);
    Generator gen(options.seed);
    auto f = std::make_shared<Sequential>();
    f->add(conv(options.in_channels, 32, 3, 2, 0, gen));                    // 0
    f->add(conv(32, 32, 3, 1, 0, gen));                                     // 1
    f->add(conv(32, 64, 3, 1, 1, gen));                                     // 2
    f->add(mixed_3a(gen));                                                  // 3
    f->add(mixed_4a(gen));                                                  // 4
    f->add(mixed_5a(gen));                                                  // 5
    for (int i = 0; i < 4; ++i) f->add(inception_a(gen));                   // 6-9
    f->add(reduction_a(gen));                                               // 10
    for (int i = 0; i < 7; ++i) f->add(inception_b(gen));                   // 11-17
    f->add(reduction_b(gen));                                               // 18
    for (int i = 0; i < 3; ++i) f->add(std::make_shared<InceptionC>(gen));  // 19-21
    features_ = register_module("features", f);
    pool_ = register_module("global_pool", make_head_pool(options));
    flatten_ = register_module("flatten", std::make_shared<Flatten>());
    head_ = register_module("last_linear", make_head(kFeatures, options, gen));
  }
  Tensor forward(const Tensor& x) override {
    HPA_CHECK(x.dim() == 4, "inception_v4: expected an NCHW input, got ", x.shape());
    HPA_CHECK(x.size(2) >= 75 && x.size(3) >= 75, "inception_v4: input ", x.shape(),
              " is too small (the smallest that reaches the head is 75x75)");
    return (*head_)((*flatten_)((*pool_)((*features_)(x))));
  }
  std::string type_name() const override { return "InceptionV4"; }
  std::string stem_key() const override { return "features.0.conv.weight"; }
  std::string head_name() const override { return "last_linear"; }
  int feature_channels() const override { return kFeatures; }

 private:
  ModulePtr features_, pool_, flatten_, head_;
};

}  // namespace

ClassifierPtr make_inception_v4(const ModelOptions& options) {
  return std::make_shared<InceptionV4>(options);
}

}  // namespace hpa
