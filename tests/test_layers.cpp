// layers/: Module bookkeeping (names, order, modes, devices, dtype, strict loading, the
// layer recorder) and each layer against the functional op it wraps, plus the acp/gap
// heads and the pretrained-stem adaptation of models/classifier.h.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "layers/layers.h"
#include "models/classifier.h"
#include "test_util.h"

namespace hpa {
namespace {

using test::all_close;

// conv-BN-ReLU, a downsample branch and a head: enough structure for the bookkeeping tests.
class Block : public Module {
 public:
  explicit Block(Generator& gen) {
    conv = register_module("conv", std::make_shared<Conv2d>(Conv2dSpec::make(4, 8, 3, 1, 1), gen));
    bn = register_module("bn", make_bn2d(8));
    relu_ = register_module("relu", std::make_shared<ReLU>());
    auto ds = std::make_shared<Sequential>();
    ds->add(std::make_shared<Conv2d>(Conv2dSpec::make(4, 8, 1), gen)).add(make_bn2d(8));
    down = register_module("downsample", ds);
    pool = register_module("pool", std::make_shared<AdaptiveConcatPool2d>());
    fc = register_module("fc", std::make_shared<Linear>(16, 3, gen));
  }
  Tensor forward(const Tensor& x) override {
    Tensor main = (*bn)((*conv)(x));
    Tensor h = (*relu_)(main + (*down)(x));
    return (*fc)((*pool)(h).flatten(1));
  }
  std::string type_name() const override { return "Block"; }

  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm> bn;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<Sequential> down;
  std::shared_ptr<AdaptiveConcatPool2d> pool;
  std::shared_ptr<Linear> fc;
};

std::vector<std::string> keys(const NamedTensors& nt) {
  std::vector<std::string> k;
  for (const auto& [name, t] : nt) k.push_back(name);
  return k;
}

TEST(Module, StateDictNamesAndOrderFollowPyTorch) {
  Generator gen(1);
  Block b(gen);
  const std::vector<std::string> want = {
      "conv.weight",
      "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
      "downsample.0.weight",
      "downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean", "downsample.1.running_var",
      "downsample.1.num_batches_tracked",
      "fc.weight", "fc.bias"};
  EXPECT_EQ(keys(b.state_dict()), want);
  const std::vector<std::string> params = {"conv.weight", "bn.weight", "bn.bias", "downsample.0.weight",
                                           "downsample.1.weight", "downsample.1.bias", "fc.weight", "fc.bias"};
  EXPECT_EQ(keys(b.named_parameters()), params);
  EXPECT_EQ(b.parameter_count(), 8 * 4 * 9 + 8 + 8 + 8 * 4 + 8 + 8 + 3 * 16 + 3);
  for (const auto& t : b.parameters()) EXPECT_TRUE(t.requires_grad());
  for (const auto& [name, t] : b.named_buffers()) EXPECT_FALSE(t.requires_grad()) << name;
  auto mods = b.named_modules();
  ASSERT_EQ(mods.size(), 9u);  // self, conv, bn, relu, downsample, downsample.0, downsample.1, pool, fc
  EXPECT_EQ(mods[0].first, "");
  EXPECT_EQ(mods[5].first, "downsample.0");
  EXPECT_EQ(&b.child("fc"), b.fc.get());
  EXPECT_HPA_ERROR(b.child("nope"), "no child 'nope'");
}

TEST(Module, TrainEvalIsRecursiveAndControlsBatchNorm) {
  Generator gen(2);
  Block b(gen);
  Tensor x = test::randn({2, 4, 5, 5}, DType::f32, 3);
  EXPECT_TRUE(b.down->children()[1].second->training());
  b.eval();
  EXPECT_FALSE(b.down->children()[1].second->training());
  Tensor y1 = b(x), y2 = b(x);
  EXPECT_TRUE(all_close(y1, y2, 0, 0));
  EXPECT_EQ(b.bn->state_dict()[4].second.to_vector<int64_t>()[0], 0);
  EXPECT_TRUE(all_close(b.bn->state_dict()[2].second, Tensor::zeros({8}), 0, 0));  // running_mean untouched
  b.train();
  b(x);
  b(x);
  EXPECT_EQ(b.bn->state_dict()[4].second.to_vector<int64_t>()[0], 2);
  EXPECT_FALSE(all_close(b.bn->state_dict()[2].second, Tensor::zeros({8}), 0, 0));
}

TEST(Module, BackwardReachesEveryParameterAndZeroGradClears) {
  Generator gen(4);
  Block b(gen);
  Tensor x = test::randn({3, 4, 6, 7}, DType::f32, 5);
  sum(b(x)).backward();
  for (const auto& [name, t] : b.named_parameters()) EXPECT_TRUE(t.grad().defined()) << name;
  b.zero_grad();
  for (const auto& [name, t] : b.named_parameters()) EXPECT_FALSE(t.grad().defined()) << name;
}

TEST(Module, StrictLoadRoundTripsAndNamesEveryBadKey) {
  Generator g1(7), g2(8);
  Block a(g1), b(g2);
  a.train();
  a(test::randn({2, 4, 5, 5}, DType::f32, 9));  // running stats and counters differ from b's
  EXPECT_EQ(b.load_state_dict(a.state_dict()), "");
  const auto sa = a.state_dict(), sb = b.state_dict();
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(all_close(sb[i].second, sa[i].second, 0, 0)) << sa[i].first;
  // Loaded by value: changing a afterwards leaves b alone.
  a.fc->weight().fill_(5.0);
  EXPECT_FALSE(all_close(b.fc->weight(), a.fc->weight(), 0, 0));

  NamedTensors bad;
  for (const auto& [name, t] : a.state_dict()) {
    if (name == "bn.bias") continue;                                              // missing
    if (name == "fc.weight") bad.emplace_back(name, Tensor::zeros({3, 15}));      // mismatched
    else bad.emplace_back(name, t);
  }
  bad.emplace_back("fc.extra", Tensor::zeros({1}));                              // unexpected
  try {
    b.load_state_dict(bad);
    FAIL() << "strict load accepted a bad state";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("1 missing: bn.bias"), std::string::npos) << m;
    EXPECT_NE(m.find("1 unexpected: fc.extra"), std::string::npos) << m;
    EXPECT_NE(m.find("fc.weight (file 3x15, model 3x16)"), std::string::npos) << m;
  }
  // A float where the model keeps an integer (or the reverse) is a mismatch too, and a
  // failed strict load changes nothing.
  NamedTensors wrong_dtype = a.state_dict();
  for (auto& [name, t] : wrong_dtype)
    if (name == "bn.num_batches_tracked") t = Tensor::zeros({}, DType::f32);
  const Tensor before = b.conv->weight().clone();
  EXPECT_HPA_ERROR(b.load_state_dict(wrong_dtype), "bn.num_batches_tracked (file dtype f32, model i64)");
  EXPECT_TRUE(all_close(b.conv->weight(), before, 0, 0));
  // Non-strict: loads what matches, reports the rest.
  b.fc->bias().fill_(0.0);
  const std::string report = b.load_state_dict(bad, /*strict=*/false);
  EXPECT_NE(report.find("missing: bn.bias"), std::string::npos) << report;
  EXPECT_TRUE(all_close(b.fc->bias(), a.fc->bias(), 0, 0));
}

TEST(Module, LoadConvertsDtypeAndToDtypeConverts) {
  Generator g1(10), g2(11);
  Block a(g1), b(g2);
  a.to(DType::f64);
  for (const auto& [name, t] : a.named_parameters()) EXPECT_EQ(t.dtype(), DType::f64) << name;
  EXPECT_EQ(a.state_dict()[5].second.dtype(), DType::i64);  // the counter keeps its dtype
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.fc->weight().dtype(), DType::f32);
  EXPECT_TRUE(all_close(b.fc->weight(), a.fc->weight(), 1e-7, 1e-6));
  Tensor x = test::randn({2, 4, 5, 5}, DType::f64, 12);
  a.eval();
  EXPECT_EQ(a(x).dtype(), DType::f64);
}

TEST(Module, RecorderSeesEveryCallWithShapesAndFlops) {
  Generator gen(13);
  Block b(gen);
  b.eval();
  LayerRecorder rec;
  b(test::randn({2, 4, 6, 6}, DType::f32, 14));
  const auto& r = rec.records();
  // conv, bn, downsample.0, downsample.1, downsample, relu, pool, fc, then the block itself.
  ASSERT_EQ(r.size(), 9u);
  EXPECT_EQ(r[0].module, b.conv.get());
  EXPECT_EQ(r[0].depth, 1);
  EXPECT_EQ(r[0].output, Shape({2, 8, 6, 6}));
  EXPECT_DOUBLE_EQ(r[0].flops, 2.0 * 2 * 8 * 6 * 6 * 4 * 9);
  EXPECT_EQ(r[2].depth, 2);  // downsample.0 inside downsample
  EXPECT_EQ(r[7].module, b.fc.get());
  EXPECT_DOUBLE_EQ(r[7].flops, 2.0 * 2 * 16 * 3);
  EXPECT_EQ(r[8].module, &b);
  EXPECT_EQ(r[8].depth, 0);
  EXPECT_EQ(r[8].output, Shape({2, 3}));
}

TEST(Layers, EachLayerEqualsItsOp) {
  Generator gen(20);
  Tensor x = test::randn({2, 6, 7, 9}, DType::f64, 21);
  Conv2dSpec spec = Conv2dSpec::make(6, 4, 3, 2, 1, 2, true);
  Conv2d conv(spec, gen);
  conv.to(DType::f64);
  EXPECT_TRUE(all_close(conv(x), conv2d(x, conv.weight(), conv.state_dict()[1].second, spec.options), 0, 0));
  EXPECT_EQ(conv.weight().shape(), Shape({4, 3, 3, 3}));

  Linear lin(63, 5, gen);
  lin.to(DType::f64);
  Tensor flat = x.reshape({12, 63});
  EXPECT_TRUE(all_close(lin(flat), linear(flat, lin.weight(), lin.bias()), 0, 0));

  Pool2dOptions po = Pool2dOptions::square(3, 2, 1, true);
  EXPECT_TRUE(all_close(MaxPool2d(po)(x), max_pool2d(x, po), 0, 0));
  po.count_include_pad = false;
  EXPECT_TRUE(all_close(AvgPool2d(po)(x), avg_pool2d(x, po), 0, 0));
  EXPECT_TRUE(all_close(GlobalAvgPool2d()(x), global_avg_pool2d(x), 0, 0));
  EXPECT_TRUE(all_close(AdaptiveConcatPool2d()(x), adaptive_concat_pool2d(x), 0, 0));
  EXPECT_TRUE(all_close(SELU()(x), selu(x), 0, 0));
  EXPECT_TRUE(all_close(Identity()(x), x, 0, 0));
  EXPECT_EQ(Flatten()(x).shape(), Shape({2, 6 * 7 * 9}));

  // BatchNorm1d equals BatchNorm2d on [N, C, 1, 1].
  auto bn1 = make_bn1d(5), bn2 = make_bn2d(5);
  bn1->to(DType::f64);
  bn2->to(DType::f64);
  Tensor v = test::randn({4, 5}, DType::f64, 22);
  EXPECT_TRUE(all_close((*bn1)(v), (*bn2)(v.reshape({4, 5, 1, 1})).reshape({4, 5}), 0, 0));
  EXPECT_TRUE(all_close(bn1->state_dict()[3].second, bn2->state_dict()[3].second, 0, 0));
  EXPECT_HPA_ERROR((*bn1)(x), "BatchNorm1d(5)");
}

TEST(Layers, DefaultInitFollowsPyTorchBounds) {
  Generator gen(30);
  Conv2d conv(Conv2dSpec::make(16, 32, 3, 1, 1, 1, true), gen);
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);
  for (const auto& [name, t] : conv.named_parameters()) {
    double lo = 1e9, hi = -1e9, s = 0;
    for (double v : test::as_doubles(t)) lo = std::min(lo, v), hi = std::max(hi, v), s += v * v;
    EXPECT_GE(lo, -bound) << name;
    EXPECT_LE(hi, bound) << name;
    EXPECT_GT(hi, 0.9 * bound) << name;  // drawn over the whole interval
    if (name == "weight") {
      EXPECT_NEAR(s / t.numel(), bound * bound / 3.0, 0.1 * bound * bound / 3.0);
    }
  }
  Tensor w = Tensor::empty({256, 128, 3, 3});
  init_kaiming_normal(w, /*fan_out=*/true, gen);
  double s = 0;
  for (double v : test::as_doubles(w)) s += v * v;
  EXPECT_NEAR(s / w.numel(), 2.0 / (256 * 9), 0.02 * 2.0 / (256 * 9));
}

TEST(Layers, DropoutOnlyInTraining) {
  Generator gen(40);
  Dropout d(0.5, false, &gen), a(0.3, true, &gen);
  Tensor x = Tensor::ones({1000});
  Tensor y = d(x);
  int zeros = 0;
  for (double v : test::as_doubles(y)) zeros += v == 0.0;
  EXPECT_GT(zeros, 400);
  EXPECT_LT(zeros, 600);
  d.eval();
  a.eval();
  EXPECT_TRUE(all_close(d(x), x, 0, 0));
  EXPECT_TRUE(all_close(a(x), x, 0, 0));
  EXPECT_HPA_ERROR(Dropout(1.0), "p must be in [0, 1)");
}

TEST(Layers, SqueezeExciteGatesChannels) {
  Generator gen(50);
  SqueezeExcite se(8, 2, gen);
  se.to(DType::f64);
  const auto p = se.state_dict();
  ASSERT_EQ(keys(p), (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  Tensor x = test::randn({2, 8, 3, 4}, DType::f64, 51);
  Tensor s = global_avg_pool2d(x);
  s = sigmoid(conv2d(relu(conv2d(s, p[0].second, p[1].second)), p[2].second, p[3].second));
  EXPECT_TRUE(all_close(se(x), x * s, 1e-15, 1e-13));
  // Gradient check through the whole module (weights and input).
  Tensor xi = test::randn({1, 8, 2, 3}, DType::f64, 52).set_requires_grad();
  EXPECT_TRUE(test::gradcheck([&](const std::vector<Tensor>& in) { return se(in[0]); }, {xi}));
}

TEST(Heads, AcpHeadHasTheDocumentedOrder) {
  Generator gen(60);
  ModelOptions o;
  o.classes = 28;
  o.buffering = parse_buffering("64:0.25,32:0.5");
  auto head = make_head(40, o, gen);
  const std::vector<std::string> want = {
      "0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked",  // BN(80)
      "2.weight", "2.bias",                                                            // Linear(80, 64)
      "4.weight", "4.bias", "4.running_mean", "4.running_var", "4.num_batches_tracked",  // BN(64)
      "6.weight", "6.bias",                                                            // Linear(64, 32)
      "8.weight", "8.bias", "8.running_mean", "8.running_var", "8.num_batches_tracked",  // BN(32)
      "9.weight", "9.bias"};                                                           // Linear(32, 28)
  EXPECT_EQ(keys(head->state_dict()), want);
  EXPECT_EQ(head->child("1").type_name(), "Dropout");
  EXPECT_EQ(head->child("3").type_name(), "ReLU");
  EXPECT_EQ(head->child("2").state_dict()[0].second.shape(), Shape({64, 80}));
  EXPECT_EQ(head->child("9").state_dict()[0].second.shape(), Shape({28, 32}));
  EXPECT_EQ((*head)(test::randn({3, 80}, DType::f32, 61)).shape(), Shape({3, 28}));

  o.buffering.clear();
  EXPECT_EQ(keys(make_head(40, o, gen)->state_dict()).size(), 7u);  // BN(80), Linear(80, 28)
  o.head = "gap";
  auto gap = make_head(40, o, gen);
  EXPECT_EQ(gap->type_name(), "Linear");
  o.buffering = parse_buffering("64:0.5");
  EXPECT_HPA_ERROR(make_head(40, o, gen), "takes no buffering layers");
  o.head = "avg";
  EXPECT_HPA_ERROR(make_head_pool(o), "model head 'avg' is unknown");
}

TEST(Heads, ParseBuffering) {
  auto b = parse_buffering("4096:0.25,1024:0.5");
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].units, 4096);
  EXPECT_DOUBLE_EQ(b[1].dropout, 0.5);
  EXPECT_EQ(buffering_str(b), "4096:0.25,1024:0.5");
  EXPECT_TRUE(parse_buffering("none").empty());
  EXPECT_HPA_ERROR(parse_buffering("1024"), "is not UNITS:DROPOUT");
  EXPECT_HPA_ERROR(parse_buffering("x:0.5"), "bad unit count 'x'");
  EXPECT_HPA_ERROR(parse_buffering("1024:1.5"), "must be in [0, 1)");
}

// A stand-in backbone to test load_pretrained without depending on a real one.
class TinyClassifier : public Classifier {
 public:
  TinyClassifier(int in, const ModelOptions& o) {
    Generator gen(o.seed);
    conv1 = register_module("conv1", std::make_shared<Conv2d>(Conv2dSpec::make(in, 6, 3, 1, 1), gen));
    bn1 = register_module("bn1", make_bn2d(6));
    pool = register_module("avgpool", make_head_pool(o));
    fc = register_module("fc", make_head(6, o, gen));
  }
  Tensor forward(const Tensor& x) override { return (*fc)((*pool)(relu((*bn1)((*conv1)(x)))).flatten(1)); }
  std::string type_name() const override { return "TinyClassifier"; }
  std::string stem_key() const override { return "conv1.weight"; }
  std::string head_name() const override { return "fc"; }
  int feature_channels() const override { return 6; }
  ModulePtr conv1, bn1, pool, fc;
};

TEST(Pretrained, StemWidenedHeadFreshRestStrict) {
  ModelOptions imagenet;
  imagenet.head = "gap";
  imagenet.classes = 10;
  imagenet.seed = 70;
  TinyClassifier src(3, imagenet);
  ModelOptions hpa_opts;
  hpa_opts.seed = 71;  // 4 channels, acp head, 28 classes
  for (auto fill : {StemFill::copy_red, StemFill::mean_rgb}) {
    TinyClassifier dst(4, hpa_opts);
    const Tensor head_before = dst.fc->state_dict()[5].second.clone();
    const std::string report = load_pretrained(dst, src.state_dict(), fill);
    EXPECT_NE(report.find("widened from 3 to 4"), std::string::npos) << report;
    EXPECT_NE(report.find("2 pretrained head tensors skipped"), std::string::npos) << report;
    const auto w = test::as_doubles(dst.state_dict()[0].second);
    const auto s = test::as_doubles(src.state_dict()[0].second);
    for (int o = 0; o < 6; ++o)
      for (int k = 0; k < 9; ++k) {
        for (int c = 0; c < 3; ++c) EXPECT_EQ(w[(o * 4 + c) * 9 + k], s[(o * 3 + c) * 9 + k]);
        const double r = s[(o * 3) * 9 + k], g = s[(o * 3 + 1) * 9 + k], b = s[(o * 3 + 2) * 9 + k];
        const double want = fill == StemFill::copy_red ? r : static_cast<float>((r + g + b) / 3.0);
        EXPECT_EQ(w[(o * 4 + 3) * 9 + k], want);
      }
    EXPECT_TRUE(all_close(dst.bn1->state_dict()[0].second, src.bn1->state_dict()[0].second, 0, 0));
    EXPECT_TRUE(all_close(dst.fc->state_dict()[5].second, head_before, 0, 0));  // head untouched
  }
  // A backbone key missing from the file is an error that names it.
  NamedTensors partial;
  for (const auto& [name, t] : src.state_dict())
    if (name != "bn1.running_var") partial.emplace_back(name, t);
  TinyClassifier dst(4, hpa_opts);
  EXPECT_HPA_ERROR(load_pretrained(dst, partial), "missing: bn1.running_var");
}

TEST(Classifier, ParameterGroupsSplitEncoderAndHead) {
  ModelOptions o;
  o.buffering = parse_buffering("16:0.5");
  TinyClassifier m(4, o);
  auto groups = m.parameter_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].first, "encoder");
  EXPECT_EQ(groups[0].second.size(), 3u);  // conv1.weight, bn1.weight, bn1.bias
  EXPECT_EQ(groups[1].first, "head");
  int64_t n = 0;
  for (const auto& g : groups)
    for (const auto& t : g.second) n += t.numel();
  EXPECT_EQ(n, m.parameter_count());
}

}  // namespace
}  // namespace hpa
