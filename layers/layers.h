// The standard layers, each a thin Module over one functional op of tensor/ops.h, with
// PyTorch's parameter names ("weight", "bias", "running_mean", ...), shapes and default
// initialization, so that a state_dict written by PyTorch loads into the same structure.
//
// Initialization draws from the Generator passed at construction (PyTorch's defaults:
// Conv2d and Linear kaiming_uniform(a=sqrt(5)) for weights, uniform(+-1/sqrt(fan_in)) for
// biases; BatchNorm weight 1, bias 0). Models re-initialize where their reference does.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "layers/module.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace hpa {

// ---- initializers (in place, no autograd) -------------------------------------------------
void init_uniform(Tensor& t, double lo, double hi, Generator& gen);
void init_normal(Tensor& t, double mean, double std, Generator& gen);
void init_constant(Tensor& t, double value);
// He/Kaiming normal for ReLU: std = sqrt(2 / fan), fan = fan_in or fan_out of a conv/linear weight.
void init_kaiming_normal(Tensor& w, bool fan_out, Generator& gen);
// LeCun normal for SELU: std = sqrt(1 / fan_in).
void init_lecun_normal(Tensor& w, Generator& gen);
// fan_in and fan_out of a weight [out, in, kh, kw] or [out, in].
int64_t fan_in(const Tensor& w);
int64_t fan_out(const Tensor& w);

struct Conv2dSpec {
  int in = 0, out = 0;
  int kernel_h = 1, kernel_w = 1;
  Conv2dOptions options;  // stride, padding, dilation, groups
  bool bias = false;
  // Square-kernel shorthand: Conv2dSpec::make(in, out, k, stride, pad).
  static Conv2dSpec make(int in, int out, int k, int stride = 1, int pad = 0, int groups = 1,
                         bool bias = false) {
    Conv2dSpec s;
    s.in = in, s.out = out, s.kernel_h = k, s.kernel_w = k, s.bias = bias;
    s.options = Conv2dOptions::square(stride, pad, 1, groups);
    return s;
  }
};

class Conv2d : public Module {
 public:
  Conv2d(const Conv2dSpec& spec, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  double flops(const Shape& in, const Shape& out) const override;
  std::string extra_repr() const override;
  Tensor& weight() { return param("weight"); }
  const Conv2dSpec& spec() const { return spec_; }

 private:
  Conv2dSpec spec_;
};

class Linear : public Module {
 public:
  Linear(int in, int out, Generator& gen, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  double flops(const Shape& in, const Shape& out) const override;
  std::string extra_repr() const override;
  Tensor& weight() { return param("weight"); }
  Tensor& bias() { return param("bias"); }
  int in_features() const { return in_; }
  int out_features() const { return out_; }

 private:
  int in_, out_;
  bool has_bias_;
};

// BatchNorm over channel dim 1: 4-D input [N, C, H, W] (BatchNorm2d) or 2-D [N, C]
// (BatchNorm1d). Buffers running_mean, running_var and num_batches_tracked (i64, kept on
// the host and counted there), as in PyTorch.
class BatchNorm : public Module {
 public:
  BatchNorm(int channels, int dims, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return dims_ == 2 ? "BatchNorm2d" : "BatchNorm1d"; }
  std::string extra_repr() const override;
  Tensor& weight() { return param("weight"); }
  Tensor& bias() { return param("bias"); }

 private:
  int channels_, dims_;
  double eps_, momentum_;
};
inline std::shared_ptr<BatchNorm> make_bn2d(int c, double eps = 1e-5) { return std::make_shared<BatchNorm>(c, 2, eps); }
inline std::shared_ptr<BatchNorm> make_bn1d(int c, double eps = 1e-5) { return std::make_shared<BatchNorm>(c, 1, eps); }

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class SELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return selu(x); }
  std::string type_name() const override { return "SELU"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string type_name() const override { return "Sigmoid"; }
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

// Flattens dims 1.. into one: [N, C, 1, 1] -> [N, C].
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string type_name() const override { return "Flatten"; }
};

// Dropout / AlphaDropout with probability p, active in training mode only. Masks come from
// the generator given (the process default when null), which must outlive the module.
class Dropout : public Module {
 public:
  explicit Dropout(double p, bool alpha = false, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return alpha_ ? "AlphaDropout" : "Dropout"; }
  std::string extra_repr() const override;
  double p() const { return p_; }

 private:
  double p_;
  bool alpha_;
  Generator* gen_;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dOptions& o) : o_(o) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, o_); }
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;

 private:
  Pool2dOptions o_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dOptions& o) : o_(o) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, o_); }
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;

 private:
  Pool2dOptions o_;
};

// [N, C, H, W] -> [N, C, 1, 1].
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return global_avg_pool2d(x); }
  std::string type_name() const override { return "GlobalAvgPool2d"; }
};

// The paper's ACP: [N, C, H, W] -> [N, 2C, 1, 1], average then max.
class AdaptiveConcatPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return adaptive_concat_pool2d(x); }
  std::string type_name() const override { return "AdaptiveConcatPool2d"; }
};

// Squeeze-and-excitation (Hu et al.), timm/Cadene naming: global average pool, fc1 (1x1
// conv C -> C/r, bias), ReLU, fc2 (1x1 conv C/r -> C, bias), sigmoid, then x * gate.
class SqueezeExcite : public Module {
 public:
  SqueezeExcite(int channels, int reduced, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SEModule"; }
  double flops(const Shape& in, const Shape& out) const override;

 private:
  std::shared_ptr<Conv2d> fc1_, fc2_;
};

// Children named "0", "1", ... run in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> modules);
  Sequential& add(ModulePtr m);
  // A child with an explicit name (torchvision's DenseNet "features.conv0" style).
  Sequential& add(const std::string& name, ModulePtr m);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
};

}  // namespace hpa
