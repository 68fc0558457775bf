// The ResNet family (models/resnet.cpp) against its references, torchvision's ResNet v1.5
// and timm's seresnext50_32x4d: exact parameter counts and state_dict key counts in the
// ImageNet configuration (the reference values), key names, order and shapes at spots that
// catch a wrong block layout, initialization statistics, output shapes for both heads and
// odd input sizes, train/eval behaviour of the BatchNorm buffers, the optimizer's
// parameter groups, gradients reaching every parameter, the layer recorder seeing every
// child call, and errors for bad configurations and inputs. CPU only. Building a model is
// most of the run time (random init of up to 60 M parameters), so each reference model is
// built once, and the 4-channel HPA models are built once and shared by the later tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "models/backbones.h"
#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace hpa;

namespace {

ModelOptions imagenet() { return ModelOptions::imagenet(); }

ModelOptions hpa_options(const std::string& head) {
  ModelOptions o;  // 4 channels, 28 classes
  o.head = head;
  if (head == "acp") o.buffering = {{1024, 0.5}};
  o.seed = 3;
  return o;
}

std::map<std::string, Tensor> by_name(const NamedTensors& named) {
  std::map<std::string, Tensor> m;
  for (const auto& [k, t] : named) m.emplace(k, t);
  return m;
}

int index_of(const NamedTensors& named, const std::string& key) {
  for (size_t i = 0; i < named.size(); ++i)
    if (named[i].first == key) return static_cast<int>(i);
  return -1;
}

std::vector<double> values(const Tensor& t) { return test::as_doubles(t); }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

Tensor input(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed = 11) {
  return test::randn({n, c, h, w}, DType::f32, seed);
}

}  // namespace

// ---- ImageNet configuration: the references' numbers ------------------------------------
// Each reference model is built once (resnet152 initializes 60 M parameters) and every
// check of that model runs on the one instance.

void basic_block_layout(const Classifier& m) {
  const NamedTensors sd = m.state_dict();
  // torchvision's order: conv1, bn1 (5 entries), layer1.0.conv1, ...
  const std::vector<std::string> first = {
      "conv1.weight",          "bn1.weight",         "bn1.bias",
      "bn1.running_mean",      "bn1.running_var",    "bn1.num_batches_tracked",
      "layer1.0.conv1.weight", "layer1.0.bn1.weight"};
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(sd[i].first, first[i]) << "entry " << i;
  const auto s = by_name(sd);
  EXPECT_EQ(s.count("layer1.0.downsample.0.weight"), 0u);  // stride 1, 64 -> 64: no downsample
  ASSERT_EQ(s.count("layer2.0.downsample.0.weight"), 1u);
  EXPECT_EQ(s.at("layer2.0.downsample.0.weight").shape(), Shape({128, 64, 1, 1}));
  EXPECT_EQ(s.at("layer2.0.conv1.weight").shape(), Shape({128, 64, 3, 3}));
  EXPECT_EQ(s.count("layer2.1.downsample.0.weight"), 0u);
  EXPECT_EQ(s.at("layer3.0.downsample.1.num_batches_tracked").dtype(), DType::i64);
  EXPECT_EQ(s.at("layer3.0.downsample.1.num_batches_tracked").numel(), 1);
  // Within a block: conv1, bn1, conv2, bn2, then downsample.
  EXPECT_LT(index_of(sd, "layer2.0.bn2.num_batches_tracked"), index_of(sd, "layer2.0.downsample.0.weight"));
  EXPECT_LT(index_of(sd, "layer2.0.downsample.1.num_batches_tracked"), index_of(sd, "layer2.1.conv1.weight"));
  std::vector<std::string> block;
  for (const auto& [name, c] : m.child("layer2").child("0").children()) block.push_back(name);
  EXPECT_EQ(block, (std::vector<std::string>{"conv1", "bn1", "relu", "conv2", "bn2", "downsample"}));
  EXPECT_EQ(m.child("layer2").child("0").type_name(), "BasicBlock");
}

void torchvision_init(const Classifier& m) {
  const auto s = by_name(m.state_dict());
  // kaiming_normal(fan_out, relu): std sqrt(2 / (out * kh * kw)).
  for (const char* key : {"layer4.0.conv2.weight", "layer3.1.conv1.weight", "layer2.0.downsample.0.weight"}) {
    SCOPED_TRACE(key);
    const Tensor& w = s.at(key);
    const auto v = values(w);
    const double want = std::sqrt(2.0 / static_cast<double>(w.size(0) * w.size(2) * w.size(3)));
    const double tol = 5.0 / std::sqrt(static_cast<double>(v.size()));  // ~5 standard errors, relative
    EXPECT_NEAR(std_of(v) / want, 1.0, tol);
    EXPECT_NEAR(mean_of(v) / want, 0.0, tol);
  }
  for (const char* key : {"bn1.weight", "layer2.0.downsample.1.weight", "layer4.1.bn2.weight"})
    for (double x : values(s.at(key))) ASSERT_EQ(x, 1.0) << key;
  for (const char* key : {"bn1.bias", "layer4.1.bn2.bias", "layer4.1.bn2.running_mean"})
    for (double x : values(s.at(key))) ASSERT_EQ(x, 0.0) << key;
  for (double x : values(s.at("layer4.1.bn2.running_var"))) ASSERT_EQ(x, 1.0);
  // fc: PyTorch's default Linear init, uniform within 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(m.feature_channels()));
  double lo = 0, hi = 0;
  for (double x : values(s.at("fc.weight"))) lo = std::min(lo, x), hi = std::max(hi, x);
  EXPECT_LE(hi, bound);
  EXPECT_GE(lo, -bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_LT(lo, -0.99 * bound);
}

// The number of blocks per stage, read from the keys: catches a wrong depth table.
std::vector<int> blocks_per_stage(const Classifier& m) {
  std::vector<int> n;
  for (int stage = 1; stage <= 4; ++stage)
    n.push_back(static_cast<int>(m.child("layer" + std::to_string(stage)).children().size()));
  return n;
}

void bottleneck_layout(const Classifier& m) {
  const NamedTensors sd = m.state_dict();
  const auto s = by_name(sd);
  // layer1.0 widens 64 -> 256 at stride 1: it has a downsample; v1.5 strides in conv2.
  EXPECT_EQ(s.at("layer1.0.downsample.0.weight").shape(), Shape({256, 64, 1, 1}));
  EXPECT_EQ(s.at("layer1.0.conv1.weight").shape(), Shape({64, 64, 1, 1}));
  EXPECT_EQ(s.at("layer1.0.conv3.weight").shape(), Shape({256, 64, 1, 1}));
  EXPECT_EQ(s.at("layer2.0.conv1.weight").shape(), Shape({128, 256, 1, 1}));
  EXPECT_EQ(s.at("layer2.0.conv2.weight").shape(), Shape({128, 128, 3, 3}));
  EXPECT_EQ(s.at("layer4.2.conv3.weight").shape(), Shape({2048, 512, 1, 1}));
  EXPECT_EQ(s.count("layer1.1.downsample.0.weight"), 0u);
  EXPECT_EQ(index_of(sd, "layer1.0.conv1.weight") + 1, index_of(sd, "layer1.0.bn1.weight"));
  EXPECT_LT(index_of(sd, "layer1.0.bn3.num_batches_tracked"), index_of(sd, "layer1.0.downsample.0.weight"));
  // Child order of a torchvision Bottleneck, and the stride in conv2 (v1.5).
  std::vector<std::string> block;
  for (const auto& [name, c] : m.child("layer1").child("0").children()) block.push_back(name);
  EXPECT_EQ(block,
            (std::vector<std::string>{"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"}));
  EXPECT_EQ(m.child("layer1").child("0").type_name(), "Bottleneck");
  const Module& b = m.child("layer3").child("0");
  EXPECT_EQ(b.child("conv1").extra_repr(), "512, 256, kernel 1x1");
  EXPECT_EQ(b.child("conv2").extra_repr(), "256, 256, kernel 3x3, stride 2x2, pad 1x1");
  EXPECT_EQ(b.child("downsample").child("0").extra_repr(), "512, 1024, kernel 1x1, stride 2x2");
}

void resnext_layout(const Classifier& m) {
  const auto s = by_name(m.state_dict());
  // width = planes * 4 / 64 * 32: 128, 256, 512, 1024; conv2 has 32 groups.
  EXPECT_EQ(s.at("layer1.0.conv1.weight").shape(), Shape({128, 64, 1, 1}));
  EXPECT_EQ(s.at("layer1.0.conv2.weight").shape(), Shape({128, 4, 3, 3}));
  EXPECT_EQ(s.at("layer3.4.conv2.weight").shape(), Shape({512, 16, 3, 3}));
  EXPECT_EQ(s.at("layer4.0.conv2.weight").shape(), Shape({1024, 32, 3, 3}));
  EXPECT_EQ(s.at("layer4.0.conv3.weight").shape(), Shape({2048, 1024, 1, 1}));
  EXPECT_EQ(m.child("layer4").child("0").child("conv2").extra_repr(),
            "1024, 1024, kernel 3x3, stride 2x2, pad 1x1, groups 32");
}

void se_layout_and_timm_init(const Classifier& m) {
  resnext_layout(m);
  const NamedTensors sd = m.state_dict();
  const auto s = by_name(sd);
  // timm's reduced channels: make_divisible(C / 16, 8).
  EXPECT_EQ(s.at("layer1.0.se.fc1.weight").shape(), Shape({16, 256, 1, 1}));
  EXPECT_EQ(s.at("layer1.0.se.fc1.bias").shape(), Shape({16}));
  EXPECT_EQ(s.at("layer2.3.se.fc2.weight").shape(), Shape({512, 32, 1, 1}));
  EXPECT_EQ(s.at("layer3.5.se.fc1.weight").shape(), Shape({64, 1024, 1, 1}));
  EXPECT_EQ(s.at("layer4.2.se.fc2.bias").shape(), Shape({2048}));
  EXPECT_EQ(sd[sd.size() - 3].first, "layer4.2.se.fc2.bias");
  // se sits after bn3 and before downsample.
  EXPECT_EQ(index_of(sd, "layer1.0.bn3.num_batches_tracked") + 1, index_of(sd, "layer1.0.se.fc1.weight"));
  EXPECT_EQ(index_of(sd, "layer1.0.se.fc2.bias") + 1, index_of(sd, "layer1.0.downsample.0.weight"));
  std::vector<std::string> block;
  for (const auto& [name, c] : m.child("layer2").child("0").children()) block.push_back(name);
  EXPECT_EQ(block, (std::vector<std::string>{"conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3",
                                             "se", "act3", "downsample"}));
  EXPECT_EQ(m.child("layer2").child("0").child("se").type_name(), "SEModule");
  // timm's init: zero_init_last (every block's bn3 weight starts at 0, the other BNs at 1)
  // and kaiming_normal(fan_out) for the SE convs too.
  for (const char* key : {"layer1.0.bn3.weight", "layer3.5.bn3.weight", "layer4.2.bn3.weight"})
    for (double x : values(s.at(key))) ASSERT_EQ(x, 0.0) << key;
  for (const char* key : {"layer1.0.bn2.weight", "layer1.0.downsample.1.weight"})
    for (double x : values(s.at(key))) ASSERT_EQ(x, 1.0) << key;
  const auto v = values(s.at("layer4.1.se.fc2.weight"));  // [2048, 128, 1, 1]: fan_out 2048
  EXPECT_NEAR(std_of(v) / std::sqrt(2.0 / 2048.0), 1.0, 5.0 / std::sqrt(static_cast<double>(v.size())));
}

struct Reference {
  std::string name;
  std::function<ClassifierPtr(const ModelOptions&)> make;
  int64_t parameters;  // torchvision / timm: sum(p.numel() for p in model.parameters())
  size_t state_keys;   // len(model.state_dict())
  int feature_channels;
  std::vector<int> blocks;
  std::function<void(const Classifier&)> checks;
};

std::ostream& operator<<(std::ostream& os, const Reference& r) { return os << r.name; }

class ResNetReference : public ::testing::TestWithParam<Reference> {};

TEST_P(ResNetReference, MatchesTheReference) {
  const Reference& ref = GetParam();
  ClassifierPtr m = ref.make(imagenet());
  EXPECT_EQ(m->parameter_count(), ref.parameters);
  const NamedTensors sd = m->state_dict();
  EXPECT_EQ(sd.size(), ref.state_keys);
  ASSERT_GE(sd.size(), 3u);
  EXPECT_EQ(sd.front().first, "conv1.weight");
  EXPECT_EQ(sd.back().first, "fc.bias");
  EXPECT_EQ(sd[sd.size() - 2].first, "fc.weight");
  EXPECT_EQ(sd.front().second.shape(), Shape({64, 3, 7, 7}));
  EXPECT_EQ(sd.back().second.shape(), Shape({1000}));
  EXPECT_EQ(sd[sd.size() - 2].second.shape(), Shape({1000, ref.feature_channels}));
  EXPECT_EQ(m->feature_channels(), ref.feature_channels);
  EXPECT_EQ(m->stem_key(), "conv1.weight");
  EXPECT_EQ(m->head_name(), "fc");
  EXPECT_EQ(blocks_per_stage(*m), ref.blocks);
  // The top-level children in the reference's order (the SE variant names its stem
  // activation act1, as timm does).
  std::vector<std::string> children;
  for (const auto& [name, c] : m->children()) children.push_back(name);
  const std::string act = ref.name == "se_resnext50_32x4d" ? "act1" : "relu";
  EXPECT_EQ(children, (std::vector<std::string>{"conv1", "bn1", act, "maxpool", "layer1", "layer2", "layer3",
                                                "layer4", "avgpool", "fc"}));
  // Every parameter is trainable; every buffer belongs to a BatchNorm (running mean and
  // variance, and the batch counter as i64).
  for (const auto& [k, p] : m->named_parameters()) ASSERT_TRUE(p.requires_grad()) << k;
  int counters = 0;
  for (const auto& [k, b] : m->named_buffers()) {
    if (!k.ends_with(".num_batches_tracked")) continue;
    EXPECT_EQ(b.dtype(), DType::i64) << k;
    ++counters;
  }
  EXPECT_EQ(m->named_buffers().size(), 3u * static_cast<size_t>(counters));
  if (ref.checks) ref.checks(*m);
}

INSTANTIATE_TEST_SUITE_P(
    Models, ResNetReference,
    ::testing::Values(
        Reference{"resnet18",
                  [](const ModelOptions& o) { return make_resnet(18, o); },
                  11689512,
                  122,
                  512,
                  {2, 2, 2, 2},
                  [](const Classifier& m) {
                    basic_block_layout(m);
                    torchvision_init(m);
                  }},
        Reference{"resnet34",
                  [](const ModelOptions& o) { return make_resnet(34, o); },
                  21797672,
                  218,
                  512,
                  {3, 4, 6, 3},
                  basic_block_layout},
        Reference{"resnet50",
                  [](const ModelOptions& o) { return make_resnet(50, o); },
                  25557032,
                  320,
                  2048,
                  {3, 4, 6, 3},
                  [](const Classifier& m) {
                    bottleneck_layout(m);
                    torchvision_init(m);
                  }},
        Reference{"resnet101",
                  [](const ModelOptions& o) { return make_resnet(101, o); },
                  44549160,
                  626,
                  2048,
                  {3, 4, 23, 3},
                  bottleneck_layout},
        Reference{"resnet152",
                  [](const ModelOptions& o) { return make_resnet(152, o); },
                  60192808,
                  932,
                  2048,
                  {3, 8, 36, 3},
                  bottleneck_layout},
        Reference{"resnext50_32x4d", make_resnext50_32x4d, 25028904, 320, 2048, {3, 4, 6, 3}, resnext_layout},
        Reference{"se_resnext50_32x4d",
                  make_se_resnext50_32x4d,
                  27559896,
                  384,
                  2048,
                  {3, 4, 6, 3},
                  se_layout_and_timm_init}),
    [](const auto& p) { return p.param.name; });

// ---- the HPA configuration (4 channels, 28 classes) ------------------------------------------
// The models below are built once and shared by the tests that follow (building them is
// most of this file's run time). No test steps an optimizer, so their weights stay at
// initialization; each test sets the mode it needs and compares buffers only within itself.

ClassifierPtr shared_model(const std::string& arch, const std::string& head) {
  static std::map<std::string, ClassifierPtr> cache;
  ClassifierPtr& m = cache[arch + "/" + head];
  if (!m) {
    const ModelOptions o = hpa_options(head);
    if (arch == "resnet18") m = make_resnet(18, o);
    if (arch == "resnet50") m = make_resnet(50, o);
    if (arch == "resnext50_32x4d") m = make_resnext50_32x4d(o);
    if (arch == "se_resnext50_32x4d") m = make_se_resnext50_32x4d(o);
  }
  EXPECT_NE(m, nullptr) << arch;
  m->train();
  m->zero_grad();
  return m;
}

TEST(ResNetInit, SameSeedSameWeightsOtherSeedOthers) {
  const NamedTensors mine = shared_model("resnet18", "gap")->named_parameters();
  ModelOptions o = hpa_options("gap");
  const auto again = by_name(make_resnet(18, o)->named_parameters());
  o.seed += 1;
  const auto other = by_name(make_resnet(18, o)->named_parameters());
  for (const auto& [k, t] : mine) {
    const auto v = values(t);
    EXPECT_EQ(v, values(again.at(k))) << k;
    // BN weights and biases are constants; everything drawn differs with the seed.
    if (k.find("bn") == std::string::npos && k.find("downsample.1") == std::string::npos) {
      EXPECT_NE(v, values(other.at(k))) << k;
    }
  }
  EXPECT_EQ(mine.front().first, "conv1.weight");
  EXPECT_EQ(mine.front().second.shape(), Shape({64, 4, 7, 7}));  // the 4-channel stem
}

class ResNetHeads : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(ResNetHeads, OutputShapes) {
  const auto [arch, head] = GetParam();
  ClassifierPtr m = shared_model(arch, head);
  EXPECT_EQ(m->child("avgpool").type_name(), head == "gap" ? "GlobalAvgPool2d" : "AdaptiveConcatPool2d");
  EXPECT_EQ(m->child("fc").type_name(), head == "gap" ? "Linear" : "Sequential");
  NoGradGuard ng;
  Tensor y = (*m)(input(2, 4, 64, 64));
  EXPECT_EQ(y.shape(), Shape({2, 28}));
  y = (*m)(input(2, 4, 67, 93));
  EXPECT_EQ(y.shape(), Shape({2, 28}));
  for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
  m->eval();
  y = (*m)(input(1, 4, 67, 93));
  EXPECT_EQ(y.shape(), Shape({1, 28}));
  for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
}

INSTANTIATE_TEST_SUITE_P(Models, ResNetHeads,
                         ::testing::Combine(::testing::Values("resnet18", "resnet50"),
                                            ::testing::Values("gap", "acp")),
                         [](const auto& p) { return std::get<0>(p.param) + "_" + std::get<1>(p.param); });

TEST(ResNetForward, ResNeXtAndSEVariantsRun) {
  for (const char* arch : {"resnext50_32x4d", "se_resnext50_32x4d"}) {
    SCOPED_TRACE(arch);
    ClassifierPtr m = shared_model(arch, "acp");
    NoGradGuard ng;
    Tensor y = (*m)(input(2, 4, 40, 56));
    EXPECT_EQ(y.shape(), Shape({2, 28}));
    for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
    m->eval();
    y = (*m)(input(1, 4, 33, 33));
    EXPECT_EQ(y.shape(), Shape({1, 28}));
    for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(ResNetForward, FullResolutionBatchOneEval) {
  ClassifierPtr m = shared_model("resnet18", "gap");
  m->eval();
  NoGradGuard ng;
  Tensor y = (*m)(input(1, 4, 512, 512));
  EXPECT_EQ(y.shape(), Shape({1, 28}));
  for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
}

TEST(ResNetForward, LayerRecorderSeesEveryChildCall) {
  ClassifierPtr m = shared_model("resnet18", "gap");
  std::map<std::string, int> calls;
  {
    NoGradGuard ng;
    LayerRecorder rec;
    (*m)(input(2, 4, 32, 32));
    for (const auto& r : rec.records()) ++calls[r.module->type_name()];
  }
  // resnet18: stem conv + 8 blocks x 2 + 3 downsample convs; ReLU: stem + 2 per block.
  EXPECT_EQ(calls["Conv2d"], 20);
  EXPECT_EQ(calls["BatchNorm2d"], 20);
  EXPECT_EQ(calls["ReLU"], 17);
  EXPECT_EQ(calls["BasicBlock"], 8);
  EXPECT_EQ(calls["Sequential"], 4 + 3);  // layers + downsamples
  EXPECT_EQ(calls["MaxPool2d"], 1);
  EXPECT_EQ(calls["GlobalAvgPool2d"], 1);
  EXPECT_EQ(calls["Linear"], 1);
  EXPECT_EQ(calls["ResNet"], 1);
}

TEST(ResNetForward, SEVariantCallsItsSqueezeExcite) {
  ClassifierPtr m = shared_model("se_resnext50_32x4d", "acp");
  std::map<std::string, int> calls;
  {
    NoGradGuard ng;
    LayerRecorder rec;
    (*m)(input(2, 4, 32, 32));
    for (const auto& r : rec.records()) ++calls[r.module->type_name()];
  }
  EXPECT_EQ(calls["SEModule"], 16);
  EXPECT_EQ(calls["Bottleneck"], 16);
  // Conv2d: stem, 3 per block, 4 downsamples, the SE's fc1 and fc2 per block.
  EXPECT_EQ(calls["Conv2d"], 1 + 16 * 3 + 4 + 16 * 2);
  EXPECT_EQ(calls["ReLU"], 1 + 16 * 3 + 1);  // stem, act1..act3 per block, the head's buffering layer
}

// ---- train / eval -------------------------------------------------------------------------

TEST(ResNetModes, EvalIsDeterministicAndLeavesBuffersAlone) {
  ClassifierPtr m = shared_model("resnet18", "acp");
  const Tensor x = input(2, 4, 48, 48);
  {
    NoGradGuard ng;
    (*m)(x);  // a training step, so the running statistics are not at their initial values
  }
  m->eval();
  std::map<std::string, std::vector<double>> before;
  for (const auto& [k, t] : m->named_buffers()) before[k] = values(t);
  Tensor a, b, one;
  std::vector<double> first = values(x);
  first.resize(first.size() / 2);
  {
    NoGradGuard ng;
    a = (*m)(x);
    b = (*m)(x);
    one = (*m)(Tensor::from_vector(first, {1, 4, 48, 48}).to(DType::f32));
  }
  EXPECT_EQ(values(a), values(b));
  for (const auto& [k, t] : m->named_buffers()) EXPECT_EQ(values(t), before.at(k)) << k;
  // Eval of one sample equals its row of the batch (no batch statistics involved).
  std::vector<double> row = values(a);
  row.resize(28);
  EXPECT_TRUE(test::all_close(one, Tensor::from_vector(row, {1, 28}).to(DType::f32), 1e-5, 1e-4, "row 0"));
}

TEST(ResNetModes, TrainingUpdatesRunningStatsAndCounters) {
  ClassifierPtr m = shared_model("resnet50", "acp");
  std::map<std::string, std::vector<double>> before;
  for (const auto& [k, t] : m->named_buffers()) before[k] = values(t);
  NoGradGuard ng;
  (*m)(input(2, 4, 64, 64, 21));
  int bns = 0;
  for (const auto& [k, t] : m->named_buffers()) {
    if (k.ends_with("num_batches_tracked")) {
      EXPECT_EQ(t.to_vector<int64_t>()[0], static_cast<int64_t>(before.at(k)[0]) + 1) << k;
      ++bns;
    } else {
      EXPECT_NE(values(t), before.at(k)) << k;
    }
  }
  EXPECT_EQ(bns, 53 + 2);  // resnet50's 53 BatchNorm2d and the acp head's 2 BatchNorm1d
}

TEST(ResNetModes, TrainAndEvalReachEveryModule) {
  ClassifierPtr m = shared_model("se_resnext50_32x4d", "acp");
  m->eval();
  for (auto& [name, mod] : m->named_modules()) EXPECT_FALSE(mod->training()) << name;
  m->train();
  for (auto& [name, mod] : m->named_modules()) EXPECT_TRUE(mod->training()) << name;
}

// ---- optimizer groups and gradients ---------------------------------------------------------

TEST(ResNetGroups, EncoderAndHeadPartitionTheParameters) {
  for (const std::string head : {"gap", "acp"}) {
    SCOPED_TRACE(head);
    ClassifierPtr m = shared_model("resnet18", head);
    const auto groups = m->parameter_groups();
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(groups[0].first, "encoder");
    EXPECT_EQ(groups[1].first, "head");
    int64_t encoder = 0, head_n = 0;
    for (const auto& t : groups[0].second) encoder += t.numel();
    for (const auto& t : groups[1].second) head_n += t.numel();
    EXPECT_EQ(encoder + head_n, m->parameter_count());
    const NamedTensors fc = m->child("fc").named_parameters();
    ASSERT_EQ(groups[1].second.size(), fc.size());
    for (size_t i = 0; i < fc.size(); ++i) EXPECT_TRUE(groups[1].second[i].same(fc[i].second)) << fc[i].first;
    // gap: Linear(512, 28); acp {1024, 0.5}: BN1d(1024), Linear(1024, 1024), BN1d(1024), Linear(1024, 28).
    const int64_t want =
        head == "gap" ? 512 * 28 + 28 : 2 * 1024 + 1024 * 1024 + 1024 + 2 * 1024 + 1024 * 28 + 28;
    EXPECT_EQ(head_n, want);
    EXPECT_EQ(groups[0].second.size(), 60u);  // the backbone's parameter tensors
  }
}

TEST(ResNetBackward, EveryParameterGetsAGradient) {
  ClassifierPtr m = shared_model("resnet18", "acp");
  Tensor y = (*m)(input(2, 4, 64, 64, 5));
  mean(bce_with_logits_per_sample(y, Tensor::zeros({2, 28}))).backward();
  int checked = 0;
  for (const auto& [k, p] : m->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << k;
    EXPECT_EQ(p.grad().shape(), p.shape()) << k;
    double norm = 0;
    for (double g : values(p.grad())) {
      ASSERT_TRUE(std::isfinite(g)) << k;
      norm += g * g;
    }
    EXPECT_GT(norm, 0.0) << k;
    ++checked;
  }
  EXPECT_EQ(checked, 60 + 8);  // resnet18's 60 backbone parameter tensors and the acp head's 8
  m->zero_grad();
}

// ---- errors -----------------------------------------------------------------------------------

TEST(ResNetErrors, BadConfigurationsAndInputs) {
  EXPECT_HPA_ERROR(make_resnet(20, hpa_options("gap")), "make_resnet", "20", "18, 34, 50, 101, 152");
  ModelOptions bad = hpa_options("gap");
  bad.in_channels = 0;
  EXPECT_HPA_ERROR(make_resnet(18, bad), "resnet18", "in_channels");
  bad = hpa_options("gap");
  bad.head = "max";
  EXPECT_HPA_ERROR(make_resnet(18, bad), "max");
  bad = hpa_options("gap");
  bad.buffering = {{1024, 0.5}};
  EXPECT_HPA_ERROR(make_resnet(18, bad), "gap", "buffering");
  ClassifierPtr m = shared_model("resnet18", "gap");
  EXPECT_HPA_ERROR((*m)(input(1, 3, 32, 32)), "resnet18", "[N, 4, H, W]", "[1, 3, 32, 32]");
  EXPECT_HPA_ERROR((*m)(test::randn({4, 32, 32}, DType::f32, 1)), "resnet18", "[N, 4, H, W]");
}
