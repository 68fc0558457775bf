// DenseNet-121/169, Inception-v4 and GapNet-PL (models/densenet.cpp, inception_v4.cpp,
// gapnet_pl.cpp): parameter counts of the ImageNet configurations against the reference
// implementations (torchvision, timm), GapNet-PL's count from the published layer sizes,
// state_dict keys, shapes and order, output shapes for the gap and acp heads at several
// input sizes, that every child is called through operator() (the layer recorder sees
// each layer), gradients reaching every parameter, train vs eval (running statistics and
// dropout), initialization, bad options and inputs, and the weight penalty (value by hand
// and a finite-difference gradient check).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "layers/layers.h"
#include "models/backbones.h"
#include "models/gapnet_pl.h"
#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace hpa;

namespace {

ModelOptions imagenet() { return ModelOptions::imagenet(); }

ModelOptions hpa_options(const std::string& head, uint64_t seed = 1) {
  ModelOptions o;
  o.in_channels = 4;
  o.classes = 28;
  o.head = head;
  o.seed = seed;
  return o;
}

std::map<std::string, Tensor> state_map(const Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, t] : m.state_dict()) out.emplace(k, t);
  return out;
}

// Expects `key` in the state_dict with the given shape.
void expect_key(const std::map<std::string, Tensor>& sd, const std::string& key, const Shape& shape) {
  auto it = sd.find(key);
  ASSERT_NE(it, sd.end()) << "missing key " << key;
  EXPECT_EQ(it->second.shape(), shape) << key;
}

int64_t index_of(const NamedTensors& sd, const std::string& key) {
  for (size_t i = 0; i < sd.size(); ++i)
    if (sd[i].first == key) return static_cast<int64_t>(i);
  return -1;
}

template <class T>
int count_modules(Module& m) {
  int n = 0;
  for (auto& [name, sub] : m.named_modules())
    if (dynamic_cast<T*>(sub) != nullptr) ++n;
  return n;
}

// How many calls the layer recorder saw of modules of type T.
template <class T>
int count_records(const LayerRecorder& rec) {
  int n = 0;
  for (const auto& r : rec.records())
    if (dynamic_cast<const T*>(r.module) != nullptr) ++n;
  return n;
}

std::vector<double> values(const Tensor& t) { return test::as_doubles(t); }

double stddev(const std::vector<double>& v) {
  double m = 0, s = 0;
  for (double e : v) m += e;
  m /= static_cast<double>(v.size());
  for (double e : v) s += (e - m) * (e - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

Tensor input(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
  return test::randn({n, c, h, w}, DType::f32, seed);
}

}  // namespace

// ---- DenseNet -----------------------------------------------------------------------------

TEST(DenseNet, ImageNetConfigurationMatchesTorchvision) {
  // torchvision.models.densenet121() / densenet169(): parameter counts and the number of
  // state_dict entries (parameters and BatchNorm buffers).
  auto d121 = make_densenet(121, imagenet());
  EXPECT_EQ(d121->parameter_count(), 7978856);
  EXPECT_EQ(d121->state_dict().size(), 727u);
  EXPECT_EQ(d121->feature_channels(), 1024);
  auto d169 = make_densenet(169, imagenet());
  EXPECT_EQ(d169->parameter_count(), 14149480);
  EXPECT_EQ(d169->state_dict().size(), 1015u);
  EXPECT_EQ(d169->feature_channels(), 1664);
  // The DenseNet-169 wiring runs too (batch 1, eval).
  d169->eval();
  EXPECT_EQ((*d169)(input(1, 3, 64, 64, 7)).shape(), Shape({1, 1000}));
  EXPECT_HPA_ERROR(make_densenet(201, imagenet()), "make_densenet", "201", "121", "169");
}

TEST(DenseNet, StateDictKeysShapesAndOrder) {
  auto m = make_densenet(121, hpa_options("gap"));
  EXPECT_EQ(m->stem_key(), "features.conv0.weight");
  EXPECT_EQ(m->head_name(), "classifier");
  const NamedTensors sd = m->state_dict();
  const auto map = state_map(*m);
  ASSERT_FALSE(sd.empty());
  EXPECT_EQ(sd.front().first, "features.conv0.weight");
  EXPECT_EQ(sd[sd.size() - 2].first, "classifier.weight");
  EXPECT_EQ(sd.back().first, "classifier.bias");
  expect_key(map, "features.conv0.weight", {64, 4, 7, 7});
  expect_key(map, "features.norm0.running_var", {64});
  expect_key(map, "features.norm0.num_batches_tracked", {});
  expect_key(map, "features.denseblock1.denselayer1.norm1.weight", {64});
  expect_key(map, "features.denseblock1.denselayer1.conv1.weight", {128, 64, 1, 1});
  expect_key(map, "features.denseblock1.denselayer2.conv1.weight", {128, 96, 1, 1});
  expect_key(map, "features.denseblock1.denselayer6.norm2.running_mean", {128});
  expect_key(map, "features.denseblock1.denselayer6.conv2.weight", {32, 128, 3, 3});
  expect_key(map, "features.transition1.norm.weight", {256});
  expect_key(map, "features.transition1.conv.weight", {128, 256, 1, 1});
  expect_key(map, "features.denseblock2.denselayer12.conv1.weight", {128, 128 + 11 * 32, 1, 1});
  expect_key(map, "features.transition2.conv.weight", {256, 512, 1, 1});
  expect_key(map, "features.denseblock3.denselayer24.conv1.weight", {128, 256 + 23 * 32, 1, 1});
  expect_key(map, "features.transition3.conv.weight", {512, 1024, 1, 1});
  expect_key(map, "features.denseblock4.denselayer16.conv2.weight", {32, 128, 3, 3});
  expect_key(map, "features.norm5.bias", {1024});
  expect_key(map, "classifier.weight", {28, 1024});
  EXPECT_EQ(map.count("features.denseblock1.denselayer7.conv1.weight"), 0u);
  EXPECT_EQ(map.count("features.transition4.conv.weight"), 0u);
  // torchvision's order: a layer's norm1 (params, buffers), conv1, norm2, conv2; blocks
  // before their transition.
  EXPECT_LT(index_of(sd, "features.denseblock1.denselayer1.norm1.num_batches_tracked"),
            index_of(sd, "features.denseblock1.denselayer1.conv1.weight"));
  EXPECT_LT(index_of(sd, "features.denseblock1.denselayer1.conv1.weight"),
            index_of(sd, "features.denseblock1.denselayer1.norm2.weight"));
  EXPECT_LT(index_of(sd, "features.denseblock1.denselayer6.conv2.weight"),
            index_of(sd, "features.transition1.norm.weight"));
  EXPECT_LT(index_of(sd, "features.transition3.conv.weight"),
            index_of(sd, "features.denseblock4.denselayer1.norm1.weight"));
  EXPECT_LT(index_of(sd, "features.denseblock4.denselayer16.conv2.weight"),
            index_of(sd, "features.norm5.weight"));

  const auto groups = m->parameter_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1].first, "head");
  EXPECT_EQ(groups[1].second.size(), 2u);
  EXPECT_EQ(groups[0].second.size() + 2, m->parameters().size());
}

TEST(DenseNet, GapAndAcpHeadsGiveClassOutputs) {
  auto gap = make_densenet(121, hpa_options("gap"));
  Tensor y = (*gap)(input(2, 4, 64, 64, 3));
  EXPECT_EQ(y.shape(), Shape({2, 28}));
  y = (*gap)(input(2, 4, 67, 45, 4));  // odd sizes
  EXPECT_EQ(y.shape(), Shape({2, 28}));

  ModelOptions o = hpa_options("acp");
  o.buffering = parse_buffering("512:0.5");
  auto acp = make_densenet(121, o);
  const auto sd = state_map(*acp);
  // BatchNorm1d(2048), Dropout, Linear(2048, 512), ReLU, BatchNorm1d(512), Linear(512, 28).
  expect_key(sd, "classifier.0.weight", {2048});
  expect_key(sd, "classifier.2.weight", {512, 2048});
  expect_key(sd, "classifier.4.running_mean", {512});
  expect_key(sd, "classifier.5.weight", {28, 512});
  y = (*acp)(input(2, 4, 64, 64, 5));
  EXPECT_EQ(y.shape(), Shape({2, 28}));
  acp->eval();
  y = (*acp)(input(1, 4, 71, 57, 6));  // batch 1, eval, odd sizes
  EXPECT_EQ(y.shape(), Shape({1, 28}));
  for (double v : values(y)) EXPECT_TRUE(std::isfinite(v));
}

TEST(DenseNet, EveryLayerGoesThroughTheRecorder) {
  auto m = make_densenet(121, hpa_options("gap"));
  m->eval();
  LayerRecorder rec;
  (*m)(input(1, 4, 64, 64, 8));
  const int convs = count_modules<Conv2d>(*m);
  EXPECT_EQ(convs, 1 + 2 * (6 + 12 + 24 + 16) + 3);  // stem, two per dense layer, transitions
  EXPECT_EQ(count_records<Conv2d>(rec), convs);
  EXPECT_EQ(count_records<BatchNorm>(rec), count_modules<BatchNorm>(*m));
  EXPECT_EQ(count_records<Linear>(rec), 1);
  EXPECT_EQ(count_records<GlobalAvgPool2d>(rec), 1);
  ASSERT_FALSE(rec.records().empty());
  EXPECT_EQ(rec.records().back().module, m.get());
  EXPECT_EQ(rec.records().back().output, Shape({1, 28}));
}

TEST(DenseNet, BackwardReachesEveryParameter) {
  auto m = make_densenet(121, hpa_options("acp", 2));
  Tensor y = (*m)(input(2, 4, 64, 64, 9));
  Tensor proj = test::randn(y.shape(), DType::f32, 10);
  sum(mul(y, proj)).backward();
  int checked = 0;
  for (const auto& [name, p] : m->named_parameters()) {
    const Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << "no gradient reached " << name;
    ASSERT_EQ(g.shape(), p.shape()) << name;
    double norm = 0;
    for (double v : values(g)) {
      ASSERT_TRUE(std::isfinite(v)) << name;
      norm += v * v;
    }
    EXPECT_GT(norm, 0.0) << "zero gradient at " << name;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(m->parameters().size()));
}

TEST(DenseNet, BlocksConcatenateInTorchvisionOrder) {
  auto m = make_densenet(121, hpa_options("gap"));
  m->eval();
  Module& features = m->child("features");
  Module& block = features.child("denseblock1");
  const Tensor x = input(1, 64, 8, 8, 20);
  const Tensor y = block(x);
  ASSERT_EQ(y.shape(), Shape({1, 64 + 6 * 32, 8, 8}));
  // The block input comes first, then each layer's 32 new features in order; layer i reads
  // the input and the features of layers 1..i-1 (the first 64 + 32 (i - 1) channels).
  const auto parts = split(y, {64, 32, 32, 32, 32, 32, 32}, 1);
  EXPECT_ALL_CLOSE(parts[0], x, 1e-12, 0.0);
  for (int i = 0; i < 6; ++i) {
    const Tensor before = split(y, {64 + 32 * i, 32 * (6 - i)}, 1)[0];
    const Tensor expect = block.child("denselayer" + std::to_string(i + 1))(before);
    EXPECT_ALL_CLOSE(parts[static_cast<size_t>(i) + 1], expect, 1e-6, 1e-6);
  }
  // After the features: ReLU, global average pooling, the classifier.
  const Tensor img = input(2, 4, 40, 40, 21);
  const Tensor expect = m->child("classifier")(global_avg_pool2d(relu(features(img))).flatten(1));
  EXPECT_ALL_CLOSE((*m)(img), expect, 1e-6, 1e-6);
}

TEST(DenseNet, RunningStatisticsChangeOnlyInTraining) {
  auto m = make_densenet(121, hpa_options("gap"));
  const auto sd = state_map(*m);
  const Tensor mean0 = sd.at("features.norm0.running_mean");
  const Tensor var5 = sd.at("features.norm5.running_var");
  const Tensor count0 = sd.at("features.norm0.num_batches_tracked");
  const auto mean_before = values(mean0), var_before = values(var5);
  const Tensor x = input(2, 4, 48, 48, 11);

  m->eval();
  EXPECT_FALSE(m->training());
  const auto y1 = values((*m)(x));
  const auto y2 = values((*m)(x));
  EXPECT_EQ(y1, y2);  // eval is deterministic
  EXPECT_EQ(values(mean0), mean_before);
  EXPECT_EQ(values(var5), var_before);
  EXPECT_EQ(count0.item(), 0.0);

  m->train();
  EXPECT_TRUE(m->child("features").child("denseblock2").child("denselayer3").child("norm1").training());
  (*m)(x);
  EXPECT_NE(values(mean0), mean_before);
  EXPECT_NE(values(var5), var_before);
  EXPECT_EQ(count0.item(), 1.0);
  // Training-mode outputs use batch statistics: they differ from the eval outputs.
  m->eval();
  EXPECT_NE(values((*m)(x)), y1);  // the running statistics moved
}

TEST(DenseNet, InitializationFollowsTorchvision) {
  auto a = make_densenet(121, hpa_options("acp", 5));
  auto b = make_densenet(121, hpa_options("acp", 5));
  auto c = make_densenet(121, hpa_options("acp", 6));
  const auto sa = a->state_dict(), sb = b->state_dict(), sc = c->state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(values(sa[i].second), values(sb[i].second)) << sa[i].first;
  const auto map = state_map(*a), map_c = state_map(*c);
  EXPECT_NE(values(map.at("features.conv0.weight")), values(map_c.at("features.conv0.weight")));

  // Kaiming normal, fan_in: std sqrt(2 / fan_in).
  const auto w = values(map.at("features.denseblock3.denselayer10.conv1.weight"));  // 128 x 544
  EXPECT_NEAR(stddev(w), std::sqrt(2.0 / 544.0), 0.02 * std::sqrt(2.0 / 544.0));
  const auto w0 = values(map.at("features.conv0.weight"));  // 64 x 196
  EXPECT_NEAR(stddev(w0), std::sqrt(2.0 / 196.0), 0.04 * std::sqrt(2.0 / 196.0));
  for (double v : values(map.at("features.norm5.weight"))) ASSERT_EQ(v, 1.0);
  for (double v : values(map.at("features.denseblock2.denselayer1.norm2.bias"))) ASSERT_EQ(v, 0.0);
  for (double v : values(map.at("classifier.0.weight"))) ASSERT_EQ(v, 1.0);  // head BN
  for (double v : values(map.at("classifier.1.bias"))) ASSERT_EQ(v, 0.0);    // head Linear bias
  // The head Linear weight keeps PyTorch's default: uniform within 1 / sqrt(fan_in).
  const auto fc = values(map.at("classifier.1.weight"));
  double max_abs = 0;
  for (double v : fc) max_abs = std::max(max_abs, std::abs(v));
  EXPECT_LE(max_abs, 1.0 / std::sqrt(2048.0));
  EXPECT_GT(max_abs, 0.9 / std::sqrt(2048.0));
}

// ---- Inception-v4 -------------------------------------------------------------------------

TEST(InceptionV4, ImageNetConfigurationMatchesTimm) {
  auto m = make_inception_v4(imagenet());
  EXPECT_EQ(m->parameter_count(), 42679816);
  EXPECT_EQ(m->feature_channels(), 1536);
  EXPECT_EQ(m->stem_key(), "features.0.conv.weight");
  EXPECT_EQ(m->head_name(), "last_linear");
  EXPECT_EQ(m->child("features").children().size(), 22u);
  // 149 BasicConv2d (3 stem, 1 + 6 + 1 in Mixed3a/4a/5a, 7 x 4 InceptionA, 4 ReductionA,
  // 10 x 7 InceptionB, 6 ReductionB, 10 x 3 InceptionC), each with one BatchNorm.
  EXPECT_EQ(count_modules<Conv2d>(*m), 3 + 8 + 28 + 4 + 70 + 6 + 30);
  // Parameters: conv weight, bn weight, bn bias per BasicConv2d, plus the head; buffers:
  // three per BatchNorm.
  EXPECT_EQ(m->state_dict().size(), 149u * 6 + 2);
}

TEST(InceptionV4, StateDictKeysShapesAndOrder) {
  auto m = make_inception_v4(hpa_options("gap"));
  const NamedTensors sd = m->state_dict();
  const auto map = state_map(*m);
  EXPECT_EQ(sd.front().first, "features.0.conv.weight");
  EXPECT_EQ(sd.back().first, "last_linear.bias");
  expect_key(map, "features.0.conv.weight", {32, 4, 3, 3});
  expect_key(map, "features.0.bn.running_mean", {32});
  expect_key(map, "features.2.conv.weight", {64, 32, 3, 3});
  expect_key(map, "features.3.conv.conv.weight", {96, 64, 3, 3});  // Mixed3a
  expect_key(map, "features.4.branch0.1.conv.weight", {96, 64, 3, 3});
  expect_key(map, "features.4.branch1.1.conv.weight", {64, 64, 1, 7});
  expect_key(map, "features.4.branch1.2.conv.weight", {64, 64, 7, 1});
  expect_key(map, "features.4.branch1.3.bn.weight", {96});
  expect_key(map, "features.5.conv.conv.weight", {192, 192, 3, 3});  // Mixed5a
  expect_key(map, "features.6.branch0.conv.weight", {96, 384, 1, 1});
  expect_key(map, "features.9.branch2.2.conv.weight", {96, 96, 3, 3});
  expect_key(map, "features.9.branch3.1.conv.weight", {96, 384, 1, 1});
  expect_key(map, "features.10.branch0.conv.weight", {384, 384, 3, 3});
  expect_key(map, "features.10.branch1.2.conv.weight", {256, 224, 3, 3});
  expect_key(map, "features.11.branch1.1.conv.weight", {224, 192, 1, 7});
  expect_key(map, "features.17.branch2.1.conv.weight", {192, 192, 7, 1});
  expect_key(map, "features.17.branch2.4.conv.weight", {256, 224, 1, 7});
  expect_key(map, "features.17.branch3.1.conv.weight", {128, 1024, 1, 1});
  expect_key(map, "features.18.branch0.1.conv.weight", {192, 192, 3, 3});
  expect_key(map, "features.18.branch1.3.conv.weight", {320, 320, 3, 3});
  expect_key(map, "features.19.branch1_1a.conv.weight", {256, 384, 1, 3});
  expect_key(map, "features.19.branch1_1b.conv.weight", {256, 384, 3, 1});
  expect_key(map, "features.21.branch2_1.conv.weight", {448, 384, 3, 1});
  expect_key(map, "features.21.branch2_2.conv.weight", {512, 448, 1, 3});
  expect_key(map, "features.21.branch2_3b.bn.running_var", {256});
  expect_key(map, "features.21.branch3.1.conv.weight", {256, 1536, 1, 1});
  expect_key(map, "last_linear.weight", {28, 1536});
  EXPECT_EQ(map.count("features.3.maxpool.weight"), 0u);
  EXPECT_EQ(map.count("features.0.conv.bias"), 0u);
  EXPECT_LT(index_of(sd, "features.5.conv.bn.num_batches_tracked"),
            index_of(sd, "features.6.branch0.conv.weight"));
  EXPECT_LT(index_of(sd, "features.19.branch1_1b.bn.weight"),
            index_of(sd, "features.19.branch2_0.conv.weight"));
  EXPECT_LT(index_of(sd, "features.19.branch2_3b.bn.weight"),
            index_of(sd, "features.19.branch3.1.conv.weight"));
  // BasicConv2d's BatchNorm uses eps 0.001.
  EXPECT_NE(
      m->child("features").child("7").child("branch1").child("0").child("bn").extra_repr().find("eps 0.001"),
      std::string::npos);
}

TEST(InceptionV4, BranchesConcatenateInTimmOrder) {
  auto m = make_inception_v4(hpa_options("gap"));
  m->eval();
  Module& f = m->child("features");
  // Mixed3a: max pool, then conv.
  Tensor x = input(1, 64, 9, 9, 22);
  auto p = split(f.child("3")(x), {64, 96}, 1);
  EXPECT_ALL_CLOSE(p[0], max_pool2d(x, Pool2dOptions::square(3, 2)), 1e-12, 0.0);
  EXPECT_ALL_CLOSE(p[1], f.child("3").child("conv")(x), 1e-6, 1e-6);
  // Mixed5a: conv, then max pool.
  x = input(1, 192, 7, 7, 23);
  p = split(f.child("5")(x), {192, 192}, 1);
  EXPECT_ALL_CLOSE(p[0], f.child("5").child("conv")(x), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[1], max_pool2d(x, Pool2dOptions::square(3, 2)), 1e-12, 0.0);
  // ReductionA: conv branch, conv branch, max pool.
  x = input(1, 384, 7, 7, 24);
  p = split(f.child("10")(x), {384, 256, 384}, 1);
  EXPECT_ALL_CLOSE(p[1], f.child("10").child("branch1")(x), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[2], max_pool2d(x, Pool2dOptions::square(3, 2)), 1e-12, 0.0);
  // InceptionC: branch0, branch1_1a, branch1_1b (both on branch1_0), branch2_3a,
  // branch2_3b (both on branch2_0 -> 2_1 -> 2_2), branch3.
  Module& c = f.child("19");
  x = input(1, 1536, 3, 3, 25);
  p = split(c(x), {256, 256, 256, 256, 256, 256}, 1);
  const Tensor x1 = c.child("branch1_0")(x);
  const Tensor x2 = c.child("branch2_2")(c.child("branch2_1")(c.child("branch2_0")(x)));
  EXPECT_ALL_CLOSE(p[0], c.child("branch0")(x), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[1], c.child("branch1_1a")(x1), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[2], c.child("branch1_1b")(x1), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[3], c.child("branch2_3a")(x2), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[4], c.child("branch2_3b")(x2), 1e-6, 1e-6);
  EXPECT_ALL_CLOSE(p[5], c.child("branch3")(x), 1e-6, 1e-6);
  // The pooling branches average the valid pixels only: a constant stays constant at
  // the borders (with the padding counted a corner would be 4/9).
  const Tensor ones = Tensor::ones({1, 1024, 4, 5});
  for (double v : values(f.child("11").child("branch3").child("0")(ones))) ASSERT_NEAR(v, 1.0, 1e-6);
}

TEST(InceptionV4, OutputShapesAndRecorder) {
  ModelOptions o = hpa_options("acp");
  o.buffering = parse_buffering("256:0.5");
  auto m = make_inception_v4(o);
  // The smallest input that reaches the head, in training mode.
  EXPECT_EQ((*m)(input(2, 4, 75, 75, 12)).shape(), Shape({2, 28}));
  m->eval();
  EXPECT_EQ((*m)(input(1, 4, 139, 101, 13)).shape(), Shape({1, 28}));
  EXPECT_HPA_ERROR((*m)(input(1, 4, 74, 80, 14)), "inception_v4", "75");

  auto gap = make_inception_v4(hpa_options("gap"));
  gap->eval();
  LayerRecorder rec;
  Tensor y = (*gap)(input(1, 4, 299, 299, 15));
  EXPECT_EQ(y.shape(), Shape({1, 28}));
  for (double v : values(y)) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(count_records<Conv2d>(rec), count_modules<Conv2d>(*gap));
  EXPECT_EQ(count_records<AvgPool2d>(rec), 4 + 7 + 3);
  EXPECT_EQ(count_records<MaxPool2d>(rec), 4);  // Mixed3a, Mixed5a, ReductionA, ReductionB
  // The final feature map of a 299x299 input is 8x8 with 1536 channels.
  bool found = false;
  for (const auto& r : rec.records())
    if (r.module == &gap->child("features")) {
      EXPECT_EQ(r.output, Shape({1, 1536, 8, 8}));
      found = true;
    }
  EXPECT_TRUE(found);
}

// ---- GapNet-PL ----------------------------------------------------------------------------

TEST(GapNetPL, ParameterCountFromThePublishedLayerSizes) {
  auto m = make_gapnet_pl(hpa_options("gap"));
  // Conv weights k*k*in*out plus out biases; FC in*out + out.
  //   block1  conv 4->32 s2:      3*3*4*32 + 32    =   1,184
  //   block2  conv 32->64 s2:     3*3*32*64 + 64   =  18,496
  //           3 x conv 64->64:    3*(3*3*64*64+64) = 110,784
  //   block3  conv 64->128:       3*3*64*128 + 128 =  73,856
  //           2 x conv 128->128:  2*(3*3*128*128+128) = 295,168
  //   FC 224->256: 224*256 + 256 = 57,600; FC 256->256: 65,792; FC 256->28: 7,196
  //   total 630,076
  const int64_t expected = (9 * 4 * 32 + 32) + (9 * 32 * 64 + 64) + 3 * (9 * 64 * 64 + 64) +
                           (9 * 64 * 128 + 128) + 2 * (9 * 128 * 128 + 128) + (224 * 256 + 256) +
                           (256 * 256 + 256) + (256 * 28 + 28);
  EXPECT_EQ(expected, 630076);
  EXPECT_EQ(m->parameter_count(), expected);
  EXPECT_EQ(m->feature_channels(), 224);
  EXPECT_EQ(m->stem_key(), "block1.0.weight");
  EXPECT_EQ(m->head_name(), "classifier");

  const NamedTensors sd = m->state_dict();
  const auto map = state_map(*m);
  EXPECT_EQ(sd.size(), 2u * 11);  // weight and bias of 8 convs and 3 FCs; no buffers
  EXPECT_EQ(sd.front().first, "block1.0.weight");
  EXPECT_EQ(sd.back().first, "classifier.6.bias");
  expect_key(map, "block1.0.weight", {32, 4, 3, 3});
  expect_key(map, "block2.0.weight", {64, 32, 3, 3});
  expect_key(map, "block2.6.bias", {64});
  expect_key(map, "block3.0.weight", {128, 64, 3, 3});
  expect_key(map, "block3.4.weight", {128, 128, 3, 3});
  expect_key(map, "classifier.0.weight", {256, 224});
  expect_key(map, "classifier.3.weight", {256, 256});
  expect_key(map, "classifier.6.weight", {28, 256});
  // SELU after every conv and hidden FC, alpha-dropout 0.3 after each hidden FC's SELU.
  const Module& head = m->child("classifier");
  EXPECT_EQ(head.child("1").type_name(), "SELU");
  EXPECT_EQ(head.child("2").type_name(), "AlphaDropout");
  EXPECT_EQ(head.child("2").extra_repr(), "p 0.3");
  EXPECT_EQ(head.child("4").type_name(), "SELU");
  EXPECT_EQ(head.child("5").type_name(), "AlphaDropout");
  EXPECT_EQ(m->child("block2").child("7").type_name(), "SELU");
  EXPECT_EQ(m->child("block2").child("8").type_name(), "MaxPool2d");
  EXPECT_EQ(m->child("block3").children().size(), 6u);
}

TEST(GapNetPL, OutputsTrainEvalAndRecorder) {
  Generator drop(99);
  ModelOptions o = hpa_options("gap", 3);
  o.dropout_gen = &drop;
  auto m = make_gapnet_pl(o);
  m->eval();
  {
    LayerRecorder rec;
    Tensor y = (*m)(input(1, 4, 512, 512, 16));
    EXPECT_EQ(y.shape(), Shape({1, 28}));
    EXPECT_EQ(count_records<Conv2d>(rec), 8);
    EXPECT_EQ(count_records<SELU>(rec), 10);
    EXPECT_EQ(count_records<GlobalAvgPool2d>(rec), 3);  // one per block
    for (const auto& r : rec.records()) {
      if (r.module == &m->child("block3")) {
        EXPECT_EQ(r.output, Shape({1, 128, 32, 32}));
      }
    }
  }
  const Tensor x = input(2, 4, 37, 53, 17);  // odd sizes
  const auto e1 = values((*m)(x)), e2 = values((*m)(x));
  EXPECT_EQ(e1, e2);
  m->train();
  const auto t1 = values((*m)(x)), t2 = values((*m)(x));
  // Alpha-dropout is active in training, with a fresh mask per call.
  EXPECT_NE(t1, e1);
  EXPECT_NE(t1, t2);
  EXPECT_EQ((*m)(input(2, 4, 11, 11, 18)).shape(), Shape({2, 28}));  // the smallest input
  EXPECT_HPA_ERROR((*m)(input(2, 4, 10, 64, 19)), "gapnet_pl", "11x11");
}

TEST(GapNetPL, HeadReadsTheConcatenatedBlockAverages) {
  auto m = make_gapnet_pl(hpa_options("gap", 5));
  m->eval();
  const Tensor x = input(2, 4, 64, 48, 26);
  const auto sd = state_map(*m);
  // Block 1 by hand: conv 3x3 stride 2 padding 1 with bias, SELU, max pool 2x2.
  const Tensor h1 = m->child("block1")(x);
  const Tensor by_hand = max_pool2d(
      selu(conv2d(x, sd.at("block1.0.weight"), sd.at("block1.0.bias"), Conv2dOptions::square(2, 1))),
      Pool2dOptions::square(2, 2));
  EXPECT_ALL_CLOSE(h1, by_hand, 1e-6, 1e-6);
  EXPECT_EQ(h1.shape(), Shape({2, 32, 16, 12}));
  const Tensor h2 = m->child("block2")(h1);
  const Tensor h3 = m->child("block3")(h2);
  EXPECT_EQ(h2.shape(), Shape({2, 64, 4, 3}));
  EXPECT_EQ(h3.shape(), Shape({2, 128, 4, 3}));
  // The head reads [avg(block1) | avg(block2) | avg(block3)]; in eval the dropouts pass
  // through, so it is FC-SELU-FC-SELU-FC.
  const Tensor feats =
      concat({global_avg_pool2d(h1), global_avg_pool2d(h2), global_avg_pool2d(h3)}, 1).flatten(1);
  Tensor h = selu(linear(feats, sd.at("classifier.0.weight"), sd.at("classifier.0.bias")));
  h = selu(linear(h, sd.at("classifier.3.weight"), sd.at("classifier.3.bias")));
  h = linear(h, sd.at("classifier.6.weight"), sd.at("classifier.6.bias"));
  EXPECT_ALL_CLOSE((*m)(x), h, 1e-6, 1e-6);
}

TEST(GapNetPL, OwnHeadOnlyAndLecunInit) {
  EXPECT_HPA_ERROR(make_gapnet_pl(hpa_options("acp")), "gapnet_pl", "'acp'", "gap");
  ModelOptions o = hpa_options("gap");
  o.buffering = parse_buffering("1024:0.5");
  EXPECT_HPA_ERROR(make_gapnet_pl(o), "gapnet_pl", "buffering", "1024:0.5");

  auto m = make_gapnet_pl(hpa_options("gap", 4));
  const auto map = state_map(*m);
  const auto w = values(map.at("block2.2.weight"));  // fan_in 576, 36,864 values
  EXPECT_NEAR(stddev(w), std::sqrt(1.0 / 576.0), 0.02 * std::sqrt(1.0 / 576.0));
  const auto fc = values(map.at("classifier.3.weight"));  // fan_in 256, 65,536 values
  EXPECT_NEAR(stddev(fc), std::sqrt(1.0 / 256.0), 0.02 * std::sqrt(1.0 / 256.0));
  for (const char* b : {"block1.0.bias", "block3.4.bias", "classifier.0.bias", "classifier.6.bias"})
    for (double v : values(map.at(b))) ASSERT_EQ(v, 0.0) << b;
}

// ---- weight penalty -----------------------------------------------------------------------

namespace {
// Conv2d (with bias), BatchNorm2d, GAP, Flatten, Linear: in f64 with weights away from 0.
std::shared_ptr<Sequential> small_net() {
  Generator gen(21);
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(Conv2dSpec::make(2, 3, 3, 1, 1, 1, /*bias=*/true), gen));
  net->add(make_bn2d(3));
  net->add(std::make_shared<GlobalAvgPool2d>());
  net->add(std::make_shared<Flatten>());
  net->add(std::make_shared<Linear>(3, 2, gen));
  net->to(DType::f64);
  uint64_t seed = 30;
  for (auto& [name, p] : net->named_parameters())
    p.copy_from(test::separated_values(p.shape(), DType::f64, seed++, 0.05));
  return net;
}
}  // namespace

TEST(WeightPenalty, ValueByHandOverConvAndLinearWeightsOnly) {
  auto net = small_net();
  const auto sd = state_map(*net);
  double abs_sum = 0, sq_sum = 0;
  for (const char* key : {"0.weight", "4.weight"})
    for (double v : values(sd.at(key))) {
      abs_sum += std::abs(v);
      sq_sum += v * v;
    }
  const double l1 = 1e-3, l2 = 0.5;
  const Tensor p = weight_penalty(*net, l1, l2);
  EXPECT_EQ(p.dim(), 0);
  EXPECT_EQ(p.dtype(), DType::f64);
  EXPECT_NEAR(p.item(), l1 * abs_sum + l2 * sq_sum, 1e-12 * (l1 * abs_sum + l2 * sq_sum));
  EXPECT_NEAR(weight_penalty(*net, 1.0, 0.0).item(), abs_sum, 1e-12 * abs_sum);
  EXPECT_NEAR(weight_penalty(*net, 0.0, 1.0).item(), sq_sum, 1e-12 * sq_sum);
  EXPECT_EQ(weight_penalty(*net, 0.0, 0.0).item(), 0.0);
  // A module with no Conv2d or Linear.
  EXPECT_EQ(weight_penalty(Sequential({std::make_shared<ReLU>()}), 1.0, 1.0).item(), 0.0);
  EXPECT_HPA_ERROR(weight_penalty(*net, -1e-7, 1e-5), "weight_penalty", "l1=-1e-07");
  EXPECT_HPA_ERROR(weight_penalty(*net, 1e-7, std::nan("")), "weight_penalty", "l2=nan");

  // GapNet-PL: the 8 conv and 3 FC weights, the paper's factors.
  auto g = make_gapnet_pl(hpa_options("gap", 8));
  double ga = 0, gs = 0;
  for (const auto& [name, t] : g->state_dict())
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0)
      for (double v : values(t)) {
        ga += std::abs(v);
        gs += v * v;
      }
  const double want = 1e-7 * ga + 1e-5 * gs;
  EXPECT_NEAR(weight_penalty(*g, 1e-7, 1e-5).item(), want, 1e-5 * want);  // f32 weights
}

TEST(WeightPenalty, GradientMatchesFiniteDifferences) {
  auto net = small_net();
  std::vector<Tensor> inputs = net->parameters();  // conv weight and bias, BN, linear
  ASSERT_EQ(inputs.size(), 6u);
  auto f = [&](const std::vector<Tensor>&) { return weight_penalty(*net, 0.3, 0.7); };
  EXPECT_TRUE(test::gradcheck(f, inputs));
  // Exactly: d/dw = l1 sign(w) + 2 l2 w on the weights, no gradient on biases and BN.
  for (auto& t : inputs) t.zero_grad();
  weight_penalty(*net, 0.3, 0.7).backward();
  const auto params = net->named_parameters();
  for (const auto& [name, t] : params) {
    if (name == "0.weight" || name == "4.weight") {
      const auto w = values(t), g = values(t.grad());
      for (size_t i = 0; i < w.size(); ++i)
        ASSERT_NEAR(g[i], 0.3 * (w[i] > 0 ? 1 : -1) + 1.4 * w[i], 1e-12) << name;
    } else {
      EXPECT_FALSE(t.grad().defined()) << name << " must not be penalized";
    }
  }
}
