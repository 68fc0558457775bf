// The ResNet family: torchvision's ResNet v1.5 (resnet18/34/50/101/152, resnext50_32x4d)
// and timm's seresnext50_32x4d, with the references' structure, child order and
// state_dict keys, so their ImageNet weights load by name.
//
// Rules a reader would otherwise have to guess:
//  - v1.5: a Bottleneck strides in its 3x3 conv2, not in conv1 (torchvision and timm).
//  - downsample ("0": 1x1 conv with the block's stride, no bias; "1": BatchNorm2d) exists
//    only in the first block of a stage whose stride is not 1 or whose input channels
//    differ from planes * expansion, as in torchvision's _make_layer.
//  - Bottleneck width = planes * (base_width / 64) * groups (ResNeXt 32x4d: 128 in layer1).
//  - The SE variant follows timm: the same Bottleneck with `se` (SqueezeExcite on the bn3
//    output, before the residual add) registered after bn3, reduced channels
//    make_divisible(C / 16, 8), and timm's activation names (act1, act2, act3 in a block,
//    act1 in the stem). Activations hold no parameters, so the keys are torchvision's
//    plus "<block>.se.fc1/fc2.weight/bias". The pooling child is `avgpool` in every variant.
//  - Initialization, from one Generator seeded with options.seed, is the reference's:
//    torchvision: every backbone conv kaiming_normal(fan_out, relu), BN weight 1 / bias 0,
//    head Linear PyTorch's default. timm (SE variant) additionally applies kaiming to the
//    SE 1x1 convs' weights (their biases keep the default) and zero-initializes bn3.weight
//    of every block (zero_init_last=True).
#include <memory>
#include <string>
#include <vector>

#include "models/backbones.h"
#include "tensor/error.h"

namespace hpa {

namespace {

// A backbone convolution, initialized as the references do (kaiming normal, fan_out).
std::shared_ptr<Conv2d> make_conv(const Conv2dSpec& spec, Generator& gen) {
  auto conv = std::make_shared<Conv2d>(spec, gen);
  init_kaiming_normal(conv->weight(), /*fan_out=*/true, gen);
  return conv;
}

// timm's make_divisible(v, divisor, round_limit=0): nearest multiple of divisor, at least
// divisor.
int make_divisible(double v, int divisor) {
  const int rounded = static_cast<int>(v + divisor / 2.0) / divisor * divisor;
  return rounded < divisor ? divisor : rounded;
}

std::shared_ptr<Sequential> make_downsample(int in, int out, int stride, Generator& gen) {
  auto ds = std::make_shared<Sequential>();
  ds->add(make_conv(Conv2dSpec::make(in, out, 1, stride), gen));
  ds->add(make_bn2d(out));
  return ds;
}

std::string block_repr(int in, int out, int stride, int width, int groups) {
  std::string s = std::to_string(in) + " -> " + std::to_string(out) + ", width " + std::to_string(width);
  if (stride != 1) s += ", stride " + std::to_string(stride);
  if (groups != 1) s += ", groups " + std::to_string(groups);
  return s;
}

// torchvision's BasicBlock (expansion 1): conv3x3(stride)-bn-relu, conv3x3-bn, + identity, relu.
class BasicBlock : public Module {
 public:
  static constexpr int kExpansion = 1;

  BasicBlock(int in, int planes, int stride, Generator& gen) : in_(in), planes_(planes), stride_(stride) {
    conv1_ = register_module("conv1", make_conv(Conv2dSpec::make(in, planes, 3, stride, 1), gen));
    bn1_ = register_module("bn1", make_bn2d(planes));
    relu_ = register_module("relu", std::make_shared<ReLU>());
    conv2_ = register_module("conv2", make_conv(Conv2dSpec::make(planes, planes, 3, 1, 1), gen));
    bn2_ = register_module("bn2", make_bn2d(planes));
    if (stride != 1 || in != planes * kExpansion)
      downsample_ = register_module("downsample", make_downsample(in, planes * kExpansion, stride, gen));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = (*relu_)((*bn1_)((*conv1_)(x)));
    out = (*bn2_)((*conv2_)(out));
    const Tensor identity = downsample_ ? (*downsample_)(x) : x;
    return (*relu_)(out + identity);
  }
  std::string type_name() const override { return "BasicBlock"; }
  std::string extra_repr() const override { return block_repr(in_, planes_, stride_, planes_, 1); }

 private:
  int in_, planes_, stride_;
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm> bn1_, bn2_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<Sequential> downsample_;
};

struct BottleneckConfig {
  int groups = 1;
  int base_width = 64;
  bool se = false;  // timm's SE variant (and its child names and init)
};

// Bottleneck (expansion 4): conv1x1-bn-relu, conv3x3(stride, groups)-bn-relu, conv1x1-bn,
// [se], + identity, relu. Child order: torchvision's (conv1, bn1, conv2, bn2, conv3, bn3,
// relu, downsample) or, for the SE variant, timm's (conv1, bn1, act1, conv2, bn2, act2,
// conv3, bn3, se, act3, downsample).
class Bottleneck : public Module {
 public:
  static constexpr int kExpansion = 4;

  Bottleneck(int in, int planes, int stride, const BottleneckConfig& cfg, Generator& gen)
      : in_(in), out_(planes * kExpansion), stride_(stride), groups_(cfg.groups) {
    width_ = static_cast<int>(planes * (cfg.base_width / 64.0)) * cfg.groups;
    conv1_ = register_module("conv1", make_conv(Conv2dSpec::make(in, width_, 1), gen));
    bn1_ = register_module("bn1", make_bn2d(width_));
    if (cfg.se) act1_ = register_module("act1", std::make_shared<ReLU>());
    conv2_ =
        register_module("conv2", make_conv(Conv2dSpec::make(width_, width_, 3, stride, 1, cfg.groups), gen));
    bn2_ = register_module("bn2", make_bn2d(width_));
    if (cfg.se) act2_ = register_module("act2", std::make_shared<ReLU>());
    conv3_ = register_module("conv3", make_conv(Conv2dSpec::make(width_, out_, 1), gen));
    bn3_ = register_module("bn3", make_bn2d(out_));
    if (cfg.se) {
      se_ = register_module("se", std::make_shared<SqueezeExcite>(out_, make_divisible(out_ / 16.0, 8), gen));
      for (const char* fc : {"fc1", "fc2"})  // timm applies its conv init to the SE's 1x1 convs too
        init_kaiming_normal(dynamic_cast<Conv2d&>(se_->child(fc)).weight(), /*fan_out=*/true, gen);
      init_constant(bn3_->weight(), 0.0);  // timm's zero_init_last
      act3_ = register_module("act3", std::make_shared<ReLU>());
    } else {
      // torchvision has one `relu` child and calls it three times (timm has act1..act3).
      act1_ = act2_ = act3_ = register_module("relu", std::make_shared<ReLU>());
    }
    if (stride != 1 || in != out_)
      downsample_ = register_module("downsample", make_downsample(in, out_, stride, gen));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = (*act1_)((*bn1_)((*conv1_)(x)));
    out = (*act2_)((*bn2_)((*conv2_)(out)));
    out = (*bn3_)((*conv3_)(out));
    if (se_) out = (*se_)(out);
    const Tensor identity = downsample_ ? (*downsample_)(x) : x;
    return (*act3_)(out + identity);
  }
  std::string type_name() const override { return "Bottleneck"; }
  std::string extra_repr() const override { return block_repr(in_, out_, stride_, width_, groups_); }

 private:
  int in_, out_, stride_, groups_, width_ = 0;
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm> bn1_, bn2_, bn3_;
  std::shared_ptr<ReLU> act1_, act2_, act3_;
  std::shared_ptr<SqueezeExcite> se_;
  std::shared_ptr<Sequential> downsample_;
};

struct ResNetConfig {
  std::string name;         // "resnet50": for messages and extra_repr
  bool bottleneck = false;  // Bottleneck (50+) or BasicBlock (18, 34)
  std::vector<int> layers;  // blocks per stage
  BottleneckConfig block;
};

class ResNet : public Classifier {
 public:
  ResNet(const ResNetConfig& cfg, const ModelOptions& options)
      : name_(cfg.name), in_channels_(options.in_channels) {
    HPA_CHECK(options.in_channels > 0, name_, ": in_channels must be positive, got ", options.in_channels);
    HPA_CHECK(cfg.layers.size() == 4, name_, ": expected 4 stages, got ", cfg.layers.size());
    Generator gen(options.seed);
    // The pooling and the head are built first, so that a bad head configuration fails
    // before the backbone is initialized; they are registered last, as in the references.
    const int expansion = cfg.bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
    feature_channels_ = 512 * expansion;
    ModulePtr pool = make_head_pool(options);
    ModulePtr head = make_head(feature_channels_, options, gen);
    const bool timm = cfg.block.se;
    conv1_ = register_module("conv1", make_conv(Conv2dSpec::make(options.in_channels, 64, 7, 2, 3), gen));
    bn1_ = register_module("bn1", make_bn2d(64));
    relu_ = register_module(timm ? "act1" : "relu", std::make_shared<ReLU>());
    maxpool_ = register_module("maxpool", std::make_shared<MaxPool2d>(Pool2dOptions::square(3, 2, 1)));
    int in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      const int planes = 64 << stage;
      auto layer = std::make_shared<Sequential>();
      for (int b = 0; b < cfg.layers[static_cast<size_t>(stage)]; ++b) {
        const int stride = (b == 0 && stage > 0) ? 2 : 1;
        if (cfg.bottleneck)
          layer->add(std::make_shared<Bottleneck>(in, planes, stride, cfg.block, gen));
        else
          layer->add(std::make_shared<BasicBlock>(in, planes, stride, gen));
        in = planes * expansion;
      }
      layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    }
    avgpool_ = register_module("avgpool", pool);
    fc_ = register_module("fc", head);
    head_ = options.head;
  }

  Tensor forward(const Tensor& x) override {
    HPA_CHECK(x.dim() == 4 && x.size(1) == in_channels_, name_, ": expected an input [N, ", in_channels_,
              ", H, W], got ", x.shape());
    Tensor h = (*maxpool_)((*relu_)((*bn1_)((*conv1_)(x))));
    for (const auto& layer : layers_) h = (*layer)(h);
    h = (*avgpool_)(h).flatten(1);
    return (*fc_)(h);
  }

  std::string type_name() const override { return "ResNet"; }
  std::string extra_repr() const override {
    return name_ + ", in_channels " + std::to_string(in_channels_) + ", head " + head_;
  }
  std::string stem_key() const override { return "conv1.weight"; }
  std::string head_name() const override { return "fc"; }
  int feature_channels() const override { return feature_channels_; }

 private:
  std::string name_, head_;
  int in_channels_, feature_channels_ = 0;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm> bn1_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<MaxPool2d> maxpool_;
  std::vector<std::shared_ptr<Sequential>> layers_;
  ModulePtr avgpool_, fc_;
};

}  // namespace

ClassifierPtr make_resnet(int depth, const ModelOptions& options) {
  ResNetConfig cfg;
  cfg.name = "resnet" + std::to_string(depth);
  switch (depth) {
    case 18:
      cfg.layers = {2, 2, 2, 2};
      break;
    case 34:
      cfg.layers = {3, 4, 6, 3};
      break;
    case 50:
      cfg.layers = {3, 4, 6, 3};
      break;
    case 101:
      cfg.layers = {3, 4, 23, 3};
      break;
    case 152:
      cfg.layers = {3, 8, 36, 3};
      break;
    default:
      HPA_FAIL("make_resnet: depth ", depth, " is not a torchvision ResNet (known: 18, 34, 50, 101, 152)");
  }
  cfg.bottleneck = depth >= 50;
  return std::make_shared<ResNet>(cfg, options);
}

ClassifierPtr make_resnext50_32x4d(const ModelOptions& options) {
  ResNetConfig cfg;
  cfg.name = "resnext50_32x4d";
  cfg.bottleneck = true;
  cfg.layers = {3, 4, 6, 3};
  cfg.block.groups = 32;
  cfg.block.base_width = 4;
  return std::make_shared<ResNet>(cfg, options);
}

ClassifierPtr make_se_resnext50_32x4d(const ModelOptions& options) {
  ResNetConfig cfg;
  cfg.name = "se_resnext50_32x4d";
  cfg.bottleneck = true;
  cfg.layers = {3, 4, 6, 3};
  cfg.block.groups = 32;
  cfg.block.base_width = 4;
  cfg.block.se = true;
  return std::make_shared<ResNet>(cfg, options);
}

}  // namespace hpa
