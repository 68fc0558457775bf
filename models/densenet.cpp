// torchvision's DenseNet-BC (Huang et al. 2017) for depths 121 and 169: growth rate 32,
// bottleneck width bn_size * growth = 128, 64 initial features, no dropout.
//
// The structure and the state_dict keys are torchvision's, child for child:
//   features.{conv0, norm0, relu0, pool0, denseblock1, transition1, ..., denseblock4, norm5}
//   features.denseblockB.denselayerL.{norm1, relu1, conv1, norm2, relu2, conv2}
//   features.transitionT.{norm, relu, conv, pool}
//   classifier  (the head: Linear for gap, the acp Sequential otherwise)
// After `features` torchvision applies a functional ReLU and the pooling; here they are
// the parameterless children `relu`, `pool` and `flatten` (registered between features and
// classifier, so the state_dict order is unchanged) so that the layer recorder sees them.
//
// A dense layer's input is the concatenation (along channels) of the block input and the
// outputs of every earlier layer of the block; the block returns all of them concatenated
// (in + L * growth channels). A transition halves the channels (1x1 conv) and the
// resolution (2x2 average pool).
//
// Initialization as torchvision: every Conv2d kaiming_normal (fan_in, ReLU gain), every
// BatchNorm weight 1 / bias 0, every Linear bias 0 (its weight keeps PyTorch's default),
// applied to the whole model including the head.
#include <memory>
#include <string>
#include <vector>

#include "models/backbones.h"
#include "tensor/error.h"

namespace hpa {

namespace {

constexpr int kGrowth = 32;
constexpr int kBnSize = 4;
constexpr int kInitFeatures = 64;

// One BN-ReLU-conv1x1-BN-ReLU-conv3x3 layer; its input is the already concatenated
// features of the block.
class DenseLayer : public Module {
 public:
  DenseLayer(int in, Generator& gen) {
    const int mid = kBnSize * kGrowth;
    norm1_ = register_module("norm1", make_bn2d(in));
    relu1_ = register_module("relu1", std::make_shared<ReLU>());
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(Conv2dSpec::make(in, mid, 1), gen));
    norm2_ = register_module("norm2", make_bn2d(mid));
    relu2_ = register_module("relu2", std::make_shared<ReLU>());
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(Conv2dSpec::make(mid, kGrowth, 3, 1, 1), gen));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*conv1_)((*relu1_)((*norm1_)(x)));
    return (*conv2_)((*relu2_)((*norm2_)(h)));
  }
  std::string type_name() const override { return "_DenseLayer"; }

 private:
  ModulePtr norm1_, relu1_, conv1_, norm2_, relu2_, conv2_;
};

class DenseBlock : public Module {
 public:
  DenseBlock(int layers, int in, Generator& gen) {
    for (int i = 0; i < layers; ++i)
      layers_.push_back(register_module("denselayer" + std::to_string(i + 1),
                                        std::make_shared<DenseLayer>(in + i * kGrowth, gen)));
  }
  Tensor forward(const Tensor& x) override {
    std::vector<Tensor> features{x};
    for (const auto& layer : layers_) {
      const Tensor input = features.size() == 1 ? features[0] : concat(features, 1);
      features.push_back((*layer)(input));
    }
    return concat(features, 1);
  }
  std::string type_name() const override { return "_DenseBlock"; }

 private:
  std::vector<ModulePtr> layers_;
};

// torchvision's _Transition is a Sequential with named children.
class Transition : public Sequential {
 public:
  Transition(int in, int out, Generator& gen) {
    add("norm", make_bn2d(in));
    add("relu", std::make_shared<ReLU>());
    add("conv", std::make_shared<Conv2d>(Conv2dSpec::make(in, out, 1), gen));
    add("pool", std::make_shared<AvgPool2d>(Pool2dOptions::square(2, 2)));
  }
  std::string type_name() const override { return "_Transition"; }
};

class DenseNet : public Classifier {
 public:
  DenseNet(int depth, const std::vector<int>& blocks, const ModelOptions& options) : depth_(depth) {
    HPA_CHECK(options.in_channels > 0, "densenet", depth, ": in_channels must be positive, got ",
              options.in_channels);
    Generator gen(options.seed);
    auto features = std::make_shared<Sequential>();
    features->add("conv0", std::make_shared<Conv2d>(
                               Conv2dSpec::make(options.in_channels, kInitFeatures, 7, 2, 3), gen));
    features->add("norm0", make_bn2d(kInitFeatures));
    features->add("relu0", std::make_shared<ReLU>());
    features->add("pool0", std::make_shared<MaxPool2d>(Pool2dOptions::square(3, 2, 1)));
    int channels = kInitFeatures;
    for (size_t b = 0; b < blocks.size(); ++b) {
      const std::string n = std::to_string(b + 1);
      features->add("denseblock" + n, std::make_shared<DenseBlock>(blocks[b], channels, gen));
      channels += blocks[b] * kGrowth;
      if (b + 1 < blocks.size()) {
        features->add("transition" + n, std::make_shared<Transition>(channels, channels / 2, gen));
        channels /= 2;
      }
    }
    features->add("norm5", make_bn2d(channels));
    channels_ = channels;

    features_ = register_module("features", features);
    relu_ = register_module("relu", std::make_shared<ReLU>());
    pool_ = register_module("pool", make_head_pool(options));
    flatten_ = register_module("flatten", std::make_shared<Flatten>());
    classifier_ = register_module("classifier", make_head(channels_, options, gen));

    for (auto& [name, m] : named_modules()) {
      if (auto* conv = dynamic_cast<Conv2d*>(m)) {
        init_kaiming_normal(conv->weight(), /*fan_out=*/false, gen);
      } else if (auto* bn = dynamic_cast<BatchNorm*>(m)) {
        init_constant(bn->weight(), 1.0);
        init_constant(bn->bias(), 0.0);
      } else if (auto* fc = dynamic_cast<Linear*>(m)) {
        init_constant(fc->bias(), 0.0);
      }
    }
  }

  Tensor forward(const Tensor& x) override {
    HPA_CHECK(x.dim() == 4, "densenet", depth_, ": expected an NCHW input, got ", x.shape());
    Tensor h = (*features_)(x);
    h = (*flatten_)((*pool_)((*relu_)(h)));
    return (*classifier_)(h);
  }
  std::string type_name() const override { return "DenseNet"; }
  std::string stem_key() const override { return "features.conv0.weight"; }
  std::string head_name() const override { return "classifier"; }
  int feature_channels() const override { return channels_; }

 private:
  int depth_;
  int channels_ = 0;
  ModulePtr features_, relu_, pool_, flatten_, classifier_;
};

}  // namespace

ClassifierPtr make_densenet(int depth, const ModelOptions& options) {
  if (depth == 121) return std::make_shared<DenseNet>(121, std::vector<int>{6, 12, 24, 16}, options);
  if (depth == 169) return std::make_shared<DenseNet>(169, std::vector<int>{6, 12, 32, 32}, options);
  HPA_FAIL("make_densenet: depth ", depth, " is not supported (known: 121, 169)");
}

}  // namespace hpa
