// The model registry and the weight paths end to end on a real backbone: make_model for
// every name, ImageNet-style weights (3 channels, 1000 classes, gap head) loaded into the
// paper's 4-channel acp model through a .safetensors file, and a 768x768 forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "models/classifier.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"
#include "test_util.h"

namespace hpa {
namespace {

using test::all_close;

TEST(Registry, EveryNameBuildsAndUnknownNamesListTheKnownOnes) {
  const auto names = model_names();
  ASSERT_EQ(names.size(), 11u);
  EXPECT_EQ(names.front(), "resnet18");
  ModelOptions o;
  o.classes = 5;
  // The smallest two are enough to see the registry dispatch; every factory's own tests
  // build the rest.
  EXPECT_EQ(make_model("resnet18", o)->feature_channels(), 512);
  o.head = "gap";
  EXPECT_EQ(make_model("gapnet_pl", o)->head_name(), "classifier");
  try {
    make_model("resnet51", o);
    FAIL() << "unknown model accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown model 'resnet51'"), std::string::npos) << m;
    for (const auto& n : names) EXPECT_NE(m.find(n), std::string::npos) << m;
  }
}

TEST(Registry, ImageNetWeightsThroughSafetensorsIntoThePaperModel) {
  ModelOptions imagenet = ModelOptions::imagenet();
  imagenet.seed = 1;
  auto src = make_model("resnet18", imagenet);
  const std::string path = ::testing::TempDir() + "hpa_registry_resnet18.safetensors";
  save_safetensors(path, src->state_dict());

  ModelOptions paper;  // 4 channels, 28 classes, acp head
  paper.buffering = parse_buffering("256:0.5");
  paper.seed = 2;
  auto dst = make_model("resnet18", paper);
  const NamedTensors fresh_head = dst->child("fc").state_dict();
  const std::string report = load_pretrained(*dst, load_safetensors(path), StemFill::mean_rgb);
  std::remove(path.c_str());
  EXPECT_NE(report.find("widened from 3 to 4"), std::string::npos) << report;
  EXPECT_NE(report.find("2 pretrained head tensors skipped"), std::string::npos) << report;  // fc.weight, fc.bias

  std::map<std::string, Tensor> s;
  for (const auto& [name, t] : src->state_dict()) s[name] = t;
  int compared = 0;
  for (const auto& [name, t] : dst->state_dict()) {
    if (name.rfind("fc.", 0) == 0) continue;
    if (name == "conv1.weight") {
      // RGB slices as given, yellow = mean of RGB.
      const Tensor w = s.at(name);
      const auto got = test::as_doubles(t), want = test::as_doubles(w);
      for (int o = 0; o < 64; ++o)
        for (int k = 0; k < 49; ++k) {
          for (int c = 0; c < 3; ++c) ASSERT_EQ(got[(o * 4 + c) * 49 + k], want[(o * 3 + c) * 49 + k]);
          const double mean = (want[(o * 3) * 49 + k] + want[(o * 3 + 1) * 49 + k] + want[(o * 3 + 2) * 49 + k]) / 3;
          ASSERT_EQ(got[(o * 4 + 3) * 49 + k], static_cast<float>(mean));
        }
    } else {
      EXPECT_TRUE(all_close(t, s.at(name), 0, 0)) << name;
    }
    ++compared;
  }
  EXPECT_EQ(compared, 122 - 2);  // every torchvision resnet18 key but the old head's two
  const NamedTensors head = dst->child("fc").state_dict();
  ASSERT_EQ(head.size(), fresh_head.size());
  for (size_t i = 0; i < head.size(); ++i) EXPECT_TRUE(all_close(head[i].second, fresh_head[i].second, 0, 0));

  // The adapted model runs at the paper's 768x768 crops.
  dst->eval();
  NoGradGuard ng;
  Tensor y = (*dst)(test::randn({1, 4, 768, 768}, DType::f32, 3));
  EXPECT_EQ(y.shape(), Shape({1, 28}));
  for (double v : test::as_doubles(y)) EXPECT_TRUE(std::isfinite(v));
}

TEST(Registry, StateDictRoundTripsThroughAFileBitForBit) {
  ModelOptions o;
  o.seed = 4;
  auto a = make_model("resnet18", o);
  a->train();
  (*a)(test::randn({2, 4, 40, 40}, DType::f32, 5));  // running statistics move
  const std::string path = ::testing::TempDir() + "hpa_registry_roundtrip.safetensors";
  save_safetensors(path, a->state_dict());
  o.seed = 6;
  auto b = make_model("resnet18", o);
  b->load_state_dict(load_safetensors(path));
  std::remove(path.c_str());
  a->eval();
  b->eval();
  NoGradGuard ng;
  Tensor x = test::randn({2, 4, 48, 56}, DType::f32, 7);
  EXPECT_TRUE(all_close((*b)(x), (*a)(x), 0, 0));
}

}  // namespace
}  // namespace hpa
