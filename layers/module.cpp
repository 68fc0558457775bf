#include "layers/module.h"

#include <map>
#include <sstream>

#include "tensor/autograd.h"
#include "tensor/error.h"

namespace hpa {

namespace {
thread_local LayerRecorder* t_recorder = nullptr;

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

std::string shape_str(const Shape& s) {
  std::string out;
  for (int i = 0; i < s.size(); ++i) {
    if (i) out += 'x';
    out += std::to_string(s[i]);
  }
  return out.empty() ? "scalar" : out;
}

LayerRecorder::LayerRecorder() : previous_(t_recorder) { t_recorder = this; }
LayerRecorder::~LayerRecorder() { t_recorder = previous_; }

Tensor Module::operator()(const Tensor& x) {
  LayerRecorder* rec = t_recorder;
  if (rec == nullptr) return forward(x);
  const int depth = rec->depth_++;
  Tensor y;
  try {
    y = forward(x);
  } catch (...) {
    rec->depth_ = depth;
    throw;
  }
  rec->depth_ = depth;
  rec->records_.push_back({this, depth, x.shape(), y.shape(), flops(x.shape(), y.shape())});
  return y;
}

double Module::flops(const Shape&, const Shape&) const { return 0.0; }

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  HPA_CHECK(t.defined(), type_name(), ": parameter '", name, "' is undefined");
  HPA_CHECK(is_floating(t.dtype()), type_name(), ": parameter '", name, "' must be floating, got ",
            t.dtype());
  for (const auto& e : params_) HPA_CHECK(e.name != name, type_name(), ": parameter '", name, "' registered twice");
  t.set_requires_grad(true);
  params_.push_back({name, std::move(t), false});
  return params_.back().tensor;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t, bool host) {
  HPA_CHECK(t.defined(), type_name(), ": buffer '", name, "' is undefined");
  for (const auto& e : buffers_) HPA_CHECK(e.name != name, type_name(), ": buffer '", name, "' registered twice");
  buffers_.push_back({name, std::move(t), host});
  return buffers_.back().tensor;
}

void Module::add_child(const std::string& name, ModulePtr m) {
  HPA_CHECK(m != nullptr, type_name(), ": child '", name, "' is null");
  HPA_CHECK(name.find('.') == std::string::npos && !name.empty(), type_name(), ": bad child name '", name, "'");
  for (const auto& c : children_) HPA_CHECK(c.first != name, type_name(), ": child '", name, "' registered twice");
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

Tensor& Module::param(const std::string& name) {
  for (auto& e : params_)
    if (e.name == name) return e.tensor;
  HPA_FAIL(type_name(), ": no parameter '", name, "'");
}

Tensor& Module::buffer(const std::string& name) {
  for (auto& e : buffers_)
    if (e.name == name) return e.tensor;
  HPA_FAIL(type_name(), ": no buffer '", name, "'");
}

Module& Module::child(const std::string& name) const {
  std::string known;
  for (const auto& c : children_) {
    if (c.first == name) return *c.second;
    if (!known.empty()) known += ", ";
    known += c.first;
  }
  HPA_FAIL(type_name(), ": no child '", name, "' (children: ", known.empty() ? "none" : known, ")");
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& e : params_) out.emplace_back(join(prefix, e.name), e.tensor);
  if (buffers)
    for (const auto& e : buffers_) out.emplace_back(join(prefix, e.name), e.tensor);
  for (const auto& [name, m] : children_) m->collect(join(prefix, name), params, buffers, out);
}

void Module::collect_refs(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out,
                          std::vector<bool>* is_param) {
  for (auto& e : params_) {
    out.emplace_back(join(prefix, e.name), &e.tensor);
    if (is_param) is_param->push_back(true);
  }
  for (auto& e : buffers_) {
    out.emplace_back(join(prefix, e.name), &e.tensor);
    if (is_param) is_param->push_back(false);
  }
  for (auto& [name, m] : children_) m->collect_refs(join(prefix, name), out, is_param);
}

NamedTensors Module::named_parameters(const std::string& prefix) const {
  NamedTensors out;
  collect(prefix, true, false, out);
  return out;
}

NamedTensors Module::named_buffers(const std::string& prefix) const {
  NamedTensors out;
  collect(prefix, false, true, out);
  return out;
}

NamedTensors Module::state_dict(const std::string& prefix) const {
  NamedTensors out;
  collect(prefix, true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (auto& [name, m] : children_) {
    auto sub = m->named_modules(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::to(Device device) {
  NoGradGuard ng;
  for (auto& e : params_) {
    if (e.tensor.device() == device) continue;
    e.tensor = e.tensor.detach().to(device).set_requires_grad(true);
  }
  for (auto& e : buffers_)
    if (!e.host && e.tensor.device() != device) e.tensor = e.tensor.to(device);
  for (auto& c : children_) c.second->to(device);
}

void Module::to(DType dtype) {
  HPA_CHECK(is_floating(dtype), type_name(), ".to: ", dtype, " is not a floating dtype");
  NoGradGuard ng;
  for (auto& e : params_)
    if (e.tensor.dtype() != dtype) e.tensor = e.tensor.detach().to(dtype).set_requires_grad(true);
  for (auto& e : buffers_)
    if (is_floating(e.tensor.dtype()) && e.tensor.dtype() != dtype) e.tensor = e.tensor.to(dtype);
  for (auto& c : children_) c.second->to(dtype);
}

void Module::zero_grad() {
  for (auto& e : params_) e.tensor.zero_grad();
  for (auto& c : children_) c.second->zero_grad();
}

std::string Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> refs;
  collect_refs("", refs, nullptr);
  std::map<std::string, Tensor*> by_name;
  for (auto& [name, t] : refs) by_name[name] = t;

  std::vector<std::string> unexpected, mismatched, missing;
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      unexpected.push_back(name);
      continue;
    }
    HPA_CHECK(given.emplace(name, &t).second, "load_state_dict: key '", name, "' given twice");
    if (!(t.shape() == it->second->shape()))
      mismatched.push_back(name + " (file " + shape_str(t.shape()) + ", model " + shape_str(it->second->shape()) + ")");
    else if (is_floating(t.dtype()) != is_floating(it->second->dtype()))
      mismatched.push_back(name + " (file dtype " + dtype_name(t.dtype()) + ", model " + dtype_name(it->second->dtype()) + ")");
  }
  for (const auto& [name, t] : refs)
    if (!given.count(name)) missing.push_back(name);

  std::ostringstream report;
  auto list = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    report << (report.tellp() > 0 ? "; " : "") << keys.size() << " " << what << ": ";
    for (size_t i = 0; i < keys.size(); ++i) report << (i ? ", " : "") << keys[i];
  };
  list("missing", missing);
  list("unexpected", unexpected);
  list("shape-mismatched", mismatched);
  if (strict && report.tellp() > 0) HPA_FAIL("load_state_dict (", type_name(), "): ", report.str());

  NoGradGuard ng;
  for (const auto& [name, src] : given) {
    Tensor& dst = *by_name.at(name);
    if (!(src->shape() == dst.shape()) || is_floating(src->dtype()) != is_floating(dst.dtype()))
      continue;  // reported above (non-strict)
    Tensor s = *src;
    if (s.dtype() != dst.dtype()) s = s.to(Device::cpu()).to(dst.dtype());
    dst.copy_from(s);
  }
  return report.str();
}

}  // namespace hpa
