// Golden tests against PyTorch: each case folder under tests/golden/ (written by
// tools/gen_golden.py with torch in float64) holds the inputs, the outputs, a fixed
// upstream gradient per output and the gradients of the inputs. We run our op with
// autograd on the same inputs and compare outputs and gradients.
//
// Tolerance: atol 1e-10, rtol 1e-8 throughout. Both sides compute in double; the only
// differences are summation order (GEMM blocking, reduction splits) which for these sizes
// (at most a few hundred terms of magnitude ~1) stay below 1e-13. The bound leaves three
// orders of headroom for that and none for a wrong formula, a wrong convention (ACP
// order, mean vs sum over classes, ceil-mode divisors) or a misplaced index, which all
// show up at 1e-3 or more.
//
// The parameters of each case (stride, padding, ...) are written here and in the
// generator; every stored gradient and upstream file must be consumed (Golden::finish),
// so a case cannot pass by skipping part of what PyTorch computed.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tensor/autograd.h"
#include "tensor/npy.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace hpa;
namespace fs = std::filesystem;

namespace {

constexpr double kAtol = 1e-10;
constexpr double kRtol = 1e-8;

class Golden {
 public:
  explicit Golden(const std::string& name) : dir_(fs::path(HPA_SOURCE_DIR) / "tests" / "golden" / name) {
    if (!fs::is_directory(dir_))
      throw Error("golden case folder " + dir_.string() +
                  " is missing: run /usr/bin/python3 tools/gen_golden.py");
  }

  bool has(const std::string& key) const { return fs::exists(dir_ / (key + ".npy")); }

  Tensor load(const std::string& key) {
    used_.insert(key);
    return load_npy((dir_ / (key + ".npy")).string());
  }

  // An input; when PyTorch stored a gradient for it, it requires one here too.
  Tensor input(const std::string& key) {
    Tensor t = load(key);
    if (has("grad_" + key)) {
      t.set_requires_grad();
      differentiable_[key] = t;
    }
    return t;
  }

  // Compares each output with PyTorch's, back-propagates the stored upstream gradients,
  // compares the input gradients, and checks that every stored file was used.
  void check(const std::map<std::string, Tensor>& outputs, double atol = kAtol, double rtol = kRtol) {
    std::vector<Tensor> roots, seeds;
    for (const auto& [key, out] : outputs) {
      EXPECT_TRUE(hpa::test::all_close(out, load(key), atol, rtol, key));
      const std::string upstream = "upstream_" + key;
      if (has(upstream)) {
        roots.push_back(out);
        seeds.push_back(load(upstream));
      }
    }
    if (!differentiable_.empty()) {
      ASSERT_FALSE(roots.empty()) << "no differentiable output";
      for (const Tensor& r : roots)
        ASSERT_TRUE(r.requires_grad()) << "output " << r.desc() << " has no grad_fn";
      run_backward(roots, seeds);
      for (const auto& [key, t] : differentiable_) {
        const Tensor grad = t.grad();
        if (!grad.defined()) {
          ADD_FAILURE() << "no gradient reached input '" << key << "'";
          continue;
        }
        EXPECT_TRUE(hpa::test::all_close(grad, load("grad_" + key), atol, rtol, "grad_" + key));
      }
    }
    finish();
  }

  // Every file PyTorch wrote must have been compared or used.
  void finish() {
    for (const auto& entry : fs::directory_iterator(dir_)) {
      const std::string key = entry.path().stem().string();
      EXPECT_TRUE(used_.count(key)) << dir_.filename().string() << "/" << key << ".npy was not checked";
    }
  }

 private:
  fs::path dir_;
  std::set<std::string> used_;
  std::map<std::string, Tensor> differentiable_;
};

}  // namespace

// ---- convolution and linear ---------------------------------------------------------

TEST(Golden, Conv2d) {
  struct Case {
    const char* name;
    Conv2dOptions options;  // stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups
  };
  const Case cases[] = {
      {"conv2d_stride2_pad1", {2, 2, 1, 1, 1, 1, 1}},
      {"conv2d_dilation2", {1, 1, 2, 2, 2, 2, 1}},
      {"conv2d_rect_asymmetric", {2, 1, 1, 0, 1, 2, 1}},
      {"conv2d_groups2", {1, 1, 0, 0, 1, 1, 2}},
      {"conv2d_resnext_grouped3x3", {1, 1, 1, 1, 1, 1, 4}},
      {"conv2d_grouped_stride2", {2, 2, 1, 1, 1, 1, 3}},
      {"conv2d_1x1", {1, 1, 0, 0, 1, 1, 1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Golden g(c.name);
    const Tensor x = g.input("x"), w = g.input("weight");
    const Tensor b = g.has("bias") ? g.input("bias") : Tensor();
    g.check({{"out", conv2d(x, w, b, c.options)}});
  }
}

TEST(Golden, Linear) {
  {
    Golden g("linear");
    const Tensor x = g.input("x"), w = g.input("weight"), b = g.input("bias");
    g.check({{"out", linear(x, w, b)}});
  }
  {
    Golden g("linear_no_bias");
    const Tensor x = g.input("x"), w = g.input("weight");
    g.check({{"out", linear(x, w)}});
  }
}

// ---- batch norm ---------------------------------------------------------------------

TEST(Golden, BatchNorm2d) {
  for (const bool training : {true, false}) {
    const char* name = training ? "batch_norm2d_train" : "batch_norm2d_eval";
    SCOPED_TRACE(name);
    Golden g(name);
    const Tensor x = g.input("x"), w = g.input("weight"), b = g.input("bias");
    // The buffers are updated in place (training); the eval case checks they stay put.
    const Tensor running_mean = g.load("running_mean").clone(), running_var = g.load("running_var").clone();
    BatchNormOptions options;
    options.training = training;
    options.momentum = 0.1;
    options.eps = 1e-5;
    const Tensor out = batch_norm2d(x, w, b, running_mean, running_var, options);
    g.check({{"out", out}, {"running_mean_after", running_mean}, {"running_var_after", running_var}});
  }
}

// ---- pooling ------------------------------------------------------------------------

TEST(Golden, MaxAndAvgPool2d) {
  struct Case {
    const char* name;
    bool max;
    Pool2dOptions
        options;  // kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad
  };
  const Case cases[] = {
      {"max_pool2d_k3s2p1", true, {3, 3, 2, 2, 1, 1, false, true}},
      {"max_pool2d_ceil", true, {3, 3, 2, 2, 0, 0, true, true}},
      {"max_pool2d_rect", true, {3, 2, 2, 1, 1, 0, false, true}},
      {"avg_pool2d_k3s2p1", false, {3, 3, 2, 2, 1, 1, false, true}},
      {"avg_pool2d_exclude_pad", false, {3, 3, 2, 2, 1, 1, false, false}},
      {"avg_pool2d_ceil_pad", false, {3, 3, 2, 2, 1, 1, true, true}},
      {"avg_pool2d_ceil_exclude_pad", false, {3, 3, 2, 2, 1, 1, true, false}},
      {"avg_pool2d_k2s2", false, {2, 2, 2, 2, 0, 0, false, true}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Golden g(c.name);
    const Tensor x = g.input("x");
    g.check({{"out", c.max ? max_pool2d(x, c.options) : avg_pool2d(x, c.options)}});
  }
}

TEST(Golden, GlobalAndAdaptiveConcatPool) {
  {
    Golden g("global_avg_pool2d");
    const Tensor x = g.input("x");
    g.check({{"out", global_avg_pool2d(x)}});
  }
  {
    Golden g("global_max_pool2d");
    const Tensor x = g.input("x");
    g.check({{"out", global_max_pool2d(x)}});
  }
  for (const char* name : {"adaptive_concat_pool2d", "adaptive_concat_pool2d_1x1"}) {
    SCOPED_TRACE(name);
    Golden g(name);
    const Tensor x = g.input("x");
    g.check({{"out", adaptive_concat_pool2d(x)}});
  }
}

// ---- elementwise --------------------------------------------------------------------

TEST(Golden, UnaryElementwise) {
  const std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> cases = {{"relu", hpa::relu},
                                                                                {"selu", hpa::selu},
                                                                                {"sigmoid", hpa::sigmoid},
                                                                                {"exp", hpa::exp},
                                                                                {"log", hpa::log}};
  for (const auto& [name, fn] : cases) {
    SCOPED_TRACE(name);
    Golden g(name);
    const Tensor x = g.input("x");
    g.check({{"out", fn(x)}});
  }
}

TEST(Golden, BroadcastingBinary) {
  const std::vector<std::pair<const char*, Tensor (*)(const Tensor&, const Tensor&)>> cases = {
      {"add_channel_bias", hpa::add}, {"add_trailing", hpa::add},     {"sub_both_sides", hpa::sub},
      {"mul_se_gate", hpa::mul},      {"mul_both_sides", hpa::mul},   {"div_same_shape", hpa::div},
      {"div_broadcast", hpa::div},    {"div_scalar_tensor", hpa::div}};
  for (const auto& [name, fn] : cases) {
    SCOPED_TRACE(name);
    Golden g(name);
    const Tensor a = g.input("a"), b = g.input("b");
    g.check({{"out", fn(a, b)}});
  }
}

// ---- reductions and shape ops -------------------------------------------------------

TEST(Golden, SumAndMean) {
  struct Case {
    const char* name;
    bool is_sum;
    std::vector<int> dims;  // empty: over all elements
    bool keepdim;
  };
  const Case cases[] = {
      {"sum_dims_1_3", true, {1, 3}, false}, {"sum_last_keepdim", true, {-1}, true},
      {"sum_all", true, {}, false},          {"mean_dims_0_2_keepdim", false, {0, 2}, true},
      {"mean_hw", false, {2, 3}, false},     {"mean_all", false, {}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Golden g(c.name);
    const Tensor x = g.input("x");
    Tensor out;
    if (c.dims.empty())
      out = c.is_sum ? sum(x) : mean(x);
    else
      out = c.is_sum ? sum(x, c.dims, c.keepdim) : mean(x, c.dims, c.keepdim);
    g.check({{"out", out}});
  }
}

TEST(Golden, ConcatAndSplit) {
  {
    Golden g("concat_dim1");
    const Tensor a = g.input("a"), b = g.input("b"), c = g.input("c");
    g.check({{"out", concat({a, b, c}, 1)}});
  }
  {
    Golden g("concat_dim0");
    const Tensor a = g.input("a"), b = g.input("b");
    g.check({{"out", concat({a, b}, 0)}});
  }
  {
    Golden g("split_dim1");
    const Tensor x = g.input("x");
    const auto parts = split(x, {1, 2, 3}, 1);
    ASSERT_EQ(parts.size(), 3u);
    g.check({{"out0", parts[0]}, {"out1", parts[1]}, {"out2", parts[2]}});
  }
  {
    Golden g("split_last_dim");
    const Tensor x = g.input("x");
    const auto parts = split(x, {2, 3}, -1);
    ASSERT_EQ(parts.size(), 2u);
    g.check({{"out0", parts[0]}, {"out1", parts[1]}});
  }
}

// ---- the training objective ---------------------------------------------------------

TEST(Golden, PerSampleLosses) {
  struct Case {
    const char* name;
    bool focal;
    bool weighted;
  };
  const Case cases[] = {
      {"bce_weighted", false, true},        {"bce_soft_targets_unweighted", false, false},
      {"bce_extreme_logits", false, false}, {"focal_weighted", true, true},
      {"focal_unweighted", true, false},    {"focal_extreme_logits", true, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Golden g(c.name);
    const Tensor logits = g.input("logits"), targets = g.load("targets");
    const Tensor weights = c.weighted ? g.load("class_weights") : Tensor();
    const Tensor out = c.focal ? focal_loss_per_sample(logits, targets, 2.0, weights)
                               : bce_with_logits_per_sample(logits, targets, weights);
    g.check({{"out", out}});
  }
}

TEST(Golden, HardSampleTopK) {
  const std::vector<std::pair<const char*, int64_t>> cases = {{"hard_sample_topk_tie_at_boundary", 3},
                                                              {"hard_sample_topk_ties_inside", 5},
                                                              {"hard_sample_topk_all", 8}};
  for (const auto& [name, k] : cases) {
    SCOPED_TRACE(name);
    Golden g(name);
    const Tensor losses = g.input("losses");
    const HardSamples hard = hard_sample_topk(losses, k);
    EXPECT_EQ(hard.indices, g.load("indices").to_vector<int64_t>());
    g.check({{"out", hard.losses}});
  }
}

TEST(Golden, EffectiveNumberWeights) {
  Golden g("effective_number_weights");
  const Tensor weights = g.load("weights");
  const std::vector<double> ours =
      effective_number_weights(g.load("class_counts").to_vector<int64_t>(), 0.999);
  EXPECT_TRUE(
      hpa::test::all_close(Tensor::from_vector(ours, weights.shape()), weights, kAtol, kRtol, "weights"));
  g.finish();
}
