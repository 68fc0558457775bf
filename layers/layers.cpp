#include "layers/layers.h"

#include <cmath>

#include "tensor/error.h"

namespace hpa {

// ---- initializers -------------------------------------------------------------------------

void init_uniform(Tensor& t, double lo, double hi, Generator& gen) {
  NoGradGuard ng;
  Tensor u = Tensor::rand(t.shape(), t.dtype(), t.device(), &gen);
  t.copy_from(add_scalar(mul_scalar(u, hi - lo), lo));
}

void init_normal(Tensor& t, double mean, double std, Generator& gen) {
  NoGradGuard ng;
  Tensor z = Tensor::randn(t.shape(), t.dtype(), t.device(), &gen);
  t.copy_from(add_scalar(mul_scalar(z, std), mean));
}

void init_constant(Tensor& t, double value) { t.fill_(value); }

int64_t fan_in(const Tensor& w) {
  HPA_CHECK(w.dim() >= 2, "fan_in: weight must be at least 2-D, got ", w.shape());
  return w.numel() / w.size(0);
}

int64_t fan_out(const Tensor& w) {
  HPA_CHECK(w.dim() >= 2, "fan_out: weight must be at least 2-D, got ", w.shape());
  return w.numel() / w.size(1);
}

void init_kaiming_normal(Tensor& w, bool use_fan_out, Generator& gen) {
  const double fan = static_cast<double>(use_fan_out ? fan_out(w) : fan_in(w));
  init_normal(w, 0.0, std::sqrt(2.0 / fan), gen);
}

void init_lecun_normal(Tensor& w, Generator& gen) {
  init_normal(w, 0.0, std::sqrt(1.0 / static_cast<double>(fan_in(w))), gen);
}

namespace {
// PyTorch's reset_parameters for Conv2d/Linear: kaiming_uniform(a = sqrt(5)) gives a bound
// of sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in); the bias uses the same bound.
void default_init(Tensor& w, Tensor* b, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(w)));
  init_uniform(w, -bound, bound, gen);
  if (b) init_uniform(*b, -bound, bound, gen);
}
}  // namespace

// ---- Conv2d -----------------------------------------------------------------------------

Conv2d::Conv2d(const Conv2dSpec& spec, Generator& gen) : spec_(spec) {
  const int g = spec.options.groups;
  HPA_CHECK(spec.in > 0 && spec.out > 0 && spec.kernel_h > 0 && spec.kernel_w > 0 && g > 0,
            "Conv2d: bad configuration in=", spec.in, " out=", spec.out, " kernel=", spec.kernel_h, "x",
            spec.kernel_w, " groups=", g);
  HPA_CHECK(spec.in % g == 0 && spec.out % g == 0, "Conv2d: in=", spec.in, " and out=", spec.out,
            " must be divisible by groups=", g);
  Tensor& w = register_parameter("weight", Tensor::empty({spec.out, spec.in / g, spec.kernel_h, spec.kernel_w}));
  if (spec.bias) {
    Tensor& b = register_parameter("bias", Tensor::empty({spec.out}));
    default_init(w, &b, gen);
  } else {
    default_init(w, nullptr, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, param("weight"), spec_.bias ? param("bias") : Tensor(), spec_.options);
}

double Conv2d::flops(const Shape&, const Shape& out) const {
  if (out.size() != 4) return 0;
  const double per_output = 2.0 * (spec_.in / spec_.options.groups) * spec_.kernel_h * spec_.kernel_w;
  return per_output * static_cast<double>(out.numel());
}

std::string Conv2d::extra_repr() const {
  const auto& o = spec_.options;
  std::string s = std::to_string(spec_.in) + ", " + std::to_string(spec_.out) + ", kernel " +
                  std::to_string(spec_.kernel_h) + "x" + std::to_string(spec_.kernel_w);
  if (o.stride_h != 1 || o.stride_w != 1) s += ", stride " + std::to_string(o.stride_h) + "x" + std::to_string(o.stride_w);
  if (o.pad_h != 0 || o.pad_w != 0) s += ", pad " + std::to_string(o.pad_h) + "x" + std::to_string(o.pad_w);
  if (o.dilation_h != 1 || o.dilation_w != 1) s += ", dilation " + std::to_string(o.dilation_h);
  if (o.groups != 1) s += ", groups " + std::to_string(o.groups);
  if (spec_.bias) s += ", bias";
  return s;
}

// ---- Linear -----------------------------------------------------------------------------

Linear::Linear(int in, int out, Generator& gen, bool bias) : in_(in), out_(out), has_bias_(bias) {
  HPA_CHECK(in > 0 && out > 0, "Linear: bad sizes in=", in, " out=", out);
  Tensor& w = register_parameter("weight", Tensor::empty({out, in}));
  if (bias) {
    Tensor& b = register_parameter("bias", Tensor::empty({out}));
    default_init(w, &b, gen);
  } else {
    default_init(w, nullptr, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, param("weight"), has_bias_ ? param("bias") : Tensor()); }

double Linear::flops(const Shape& in, const Shape&) const {
  if (in.size() < 1) return 0;
  return 2.0 * static_cast<double>(in.numel() / in[in.size() - 1]) * in_ * out_;
}

std::string Linear::extra_repr() const {
  return std::to_string(in_) + " -> " + std::to_string(out_) + (has_bias_ ? ", bias" : "");
}

// ---- BatchNorm ----------------------------------------------------------------------------

BatchNorm::BatchNorm(int channels, int dims, double eps, double momentum)
    : channels_(channels), dims_(dims), eps_(eps), momentum_(momentum) {
  HPA_CHECK(channels > 0 && (dims == 1 || dims == 2), "BatchNorm: bad configuration channels=", channels,
            " dims=", dims);
  register_parameter("weight", Tensor::ones({channels}));
  register_parameter("bias", Tensor::zeros({channels}));
  register_buffer("running_mean", Tensor::zeros({channels}));
  register_buffer("running_var", Tensor::ones({channels}));
  register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i64), /*host=*/true);
}

Tensor BatchNorm::forward(const Tensor& x) {
  const int want = dims_ == 2 ? 4 : 2;
  HPA_CHECK(x.dim() == want && x.size(1) == channels_, type_name(), "(", channels_, "): expected a ", want,
            "-D input with ", channels_, " channels, got ", x.shape());
  BatchNormOptions o;
  o.training = training();
  o.momentum = momentum_;
  o.eps = eps_;
  if (training()) {
    Tensor& n = buffer("num_batches_tracked");
    n.data<int64_t>()[0] += 1;
  }
  if (dims_ == 2) return batch_norm2d(x, param("weight"), param("bias"), buffer("running_mean"), buffer("running_var"), o);
  Tensor y = batch_norm2d(x.reshape({x.size(0), x.size(1), 1, 1}), param("weight"), param("bias"),
                          buffer("running_mean"), buffer("running_var"), o);
  return y.reshape({x.size(0), x.size(1)});
}

std::string BatchNorm::extra_repr() const {
  return std::to_string(channels_) + ", eps " + detail::concat(eps_) + ", momentum " + detail::concat(momentum_);
}

// ---- Dropout ------------------------------------------------------------------------------

Dropout::Dropout(double p, bool alpha, Generator* gen) : p_(p), alpha_(alpha), gen_(gen) {
  HPA_CHECK(p >= 0.0 && p < 1.0, type_name(), ": p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  return alpha_ ? alpha_dropout(x, p_, training(), gen_) : dropout(x, p_, training(), gen_);
}

std::string Dropout::extra_repr() const { return "p " + detail::concat(p_); }

namespace {
std::string pool_repr(const Pool2dOptions& o) {
  std::string s = "kernel " + std::to_string(o.kernel_h) + "x" + std::to_string(o.kernel_w) + ", stride " +
                  std::to_string(o.stride_h) + "x" + std::to_string(o.stride_w);
  if (o.pad_h || o.pad_w) s += ", pad " + std::to_string(o.pad_h) + "x" + std::to_string(o.pad_w);
  if (o.ceil_mode) s += ", ceil_mode";
  return s;
}
}  // namespace

std::string MaxPool2d::extra_repr() const { return pool_repr(o_); }
std::string AvgPool2d::extra_repr() const {
  return pool_repr(o_) + (o_.count_include_pad ? "" : ", count_include_pad false");
}

// ---- SqueezeExcite ------------------------------------------------------------------------

SqueezeExcite::SqueezeExcite(int channels, int reduced, Generator& gen) {
  fc1_ = register_module("fc1", std::make_shared<Conv2d>(Conv2dSpec::make(channels, reduced, 1, 1, 0, 1, true), gen));
  fc2_ = register_module("fc2", std::make_shared<Conv2d>(Conv2dSpec::make(reduced, channels, 1, 1, 0, 1, true), gen));
}

Tensor SqueezeExcite::forward(const Tensor& x) {
  Tensor s = global_avg_pool2d(x);
  s = sigmoid((*fc2_)(relu((*fc1_)(s))));
  return x * s;  // broadcast over H, W
}

double SqueezeExcite::flops(const Shape& in, const Shape&) const {
  return in.size() == 4 ? static_cast<double>(in.numel()) : 0.0;  // the gating multiply
}

// ---- Sequential ---------------------------------------------------------------------------

Sequential::Sequential(std::vector<ModulePtr> modules) {
  for (auto& m : modules) add(std::move(m));
}

Sequential& Sequential::add(ModulePtr m) { return add(std::to_string(children().size()), std::move(m)); }

Sequential& Sequential::add(const std::string& name, ModulePtr m) {
  register_module(name, std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, m] : children()) h = (*m)(h);
  return h;
}

}  // namespace hpa
