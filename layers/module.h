// Module: the building block of models. A module owns named parameters (trainable
// tensors), named buffers (state that is saved but not trained, e.g. BatchNorm's running
// statistics) and named child modules. Names compose with dots exactly as PyTorch's
// state_dict keys do ("layer1.0.conv1.weight"), so weights move between the two by name.
//
// Order: a module lists its own parameters, then its own buffers, then each child's
// entries, in registration order -- PyTorch's state_dict order.
//
// Every module is in training or evaluation mode (train()/eval() set it recursively);
// BatchNorm and the dropouts read it. forward() takes and returns one tensor; modules with
// several branches (Inception, DenseNet, residual blocks) call their children inside
// their own forward. Call modules through operator(), which also feeds the layer
// recorder that `hpa_model summary` uses.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/safetensors.h"  // NamedTensors
#include "tensor/tensor.h"

namespace hpa {

class Module;
using ModulePtr = std::shared_ptr<Module>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The computation. Subclasses implement it; callers use operator().
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x);

  // PyTorch's class name ("Conv2d", "Bottleneck"), for summaries and messages.
  virtual std::string type_name() const = 0;
  // Multiply-accumulate count x 2 of one call that mapped `in` to `out` (whole batch);
  // 0 for modules whose cost is negligible or is counted in their children.
  virtual double flops(const Shape& in, const Shape& out) const;
  // One-line description of the configuration ("4, 64, kernel 7x7, stride 2").
  virtual std::string extra_repr() const { return ""; }

  // ---- structure -------------------------------------------------------------------
  NamedTensors named_parameters(const std::string& prefix = "") const;
  NamedTensors named_buffers(const std::string& prefix = "") const;
  // Parameters then buffers, in PyTorch's state_dict order (module by module).
  NamedTensors state_dict(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  // This module ("" or prefix) and every descendant, depth first, with qualified names.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  const std::vector<std::pair<std::string, ModulePtr>>& children() const { return children_; }
  // The child called `name`; throws hpa::Error naming the known children otherwise.
  Module& child(const std::string& name) const;

  // ---- mode and placement -------------------------------------------------------------
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  // Moves every parameter and buffer to `device` (host-resident buffers excepted),
  // keeping requires_grad; gradients are dropped.
  void to(Device device);
  // Converts floating parameters and buffers to `dtype` (f32 or f64).
  void to(DType dtype);
  void zero_grad();

  // ---- weights ----------------------------------------------------------------------
  // Copies `state` into this module's parameters and buffers by name (converting dtype
  // and device). strict: every key must match a parameter or buffer and every parameter
  // and buffer must be given, with equal shapes; otherwise one hpa::Error lists every
  // missing, unexpected and mismatched key. Non-strict loads the matching keys, skips the
  // rest and returns the report (empty when everything matched).
  std::string load_state_dict(const NamedTensors& state, bool strict = true);

 protected:
  // Registration, in the order that fixes the state_dict order. Parameters get
  // requires_grad. A host buffer stays on the CPU whatever to(device) is asked
  // (BatchNorm's num_batches_tracked: a counter the host increments).
  Tensor& register_parameter(const std::string& name, Tensor t);
  Tensor& register_buffer(const std::string& name, Tensor t, bool host = false);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Access by name to this module's own entries (for subclasses with dynamic layouts).
  Tensor& param(const std::string& name);
  Tensor& buffer(const std::string& name);

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool host = false;
  };
  void add_child(const std::string& name, ModulePtr m);
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  void collect_refs(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out,
                    std::vector<bool>* is_param);

  std::deque<Entry> params_;  // deque: references returned by register_* stay valid
  std::deque<Entry> buffers_;
  std::vector<std::pair<std::string, ModulePtr>> children_;
  bool training_ = true;
};

// "1x4x512x512" for messages and summaries.
std::string shape_str(const Shape& s);

// ---- layer recorder (hpa_model summary) -------------------------------------------------
// While a LayerRecorder is alive on this thread, every Module::operator() call appends
// one record after its forward returns (children before their parent).
struct LayerRecord {
  const Module* module = nullptr;
  int depth = 0;  // nesting depth of the call (0: outermost)
  Shape input, output;
  double flops = 0;
};

class LayerRecorder {
 public:
  LayerRecorder();
  ~LayerRecorder();
  LayerRecorder(const LayerRecorder&) = delete;
  LayerRecorder& operator=(const LayerRecorder&) = delete;
  const std::vector<LayerRecord>& records() const { return records_; }

 private:
  friend class Module;
  std::vector<LayerRecord> records_;
  int depth_ = 0;
  LayerRecorder* previous_ = nullptr;
};

}  // namespace hpa
