#include "optim/sgd.h"

#include "tensor/autograd.h"

namespace hpa {

SGD::SGD(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (const auto& g : groups_) {
    HPA_CHECK(g.args.lr >= 0, "SGD: group '", g.name, "' has a negative learning rate ", g.args.lr);
    HPA_CHECK(g.args.momentum >= 0 && g.args.momentum < 1, "SGD: group '", g.name, "' momentum ",
              g.args.momentum, " outside [0, 1)");
    HPA_CHECK(!g.args.nesterov || g.args.momentum > 0, "SGD: nesterov needs momentum > 0");
    for (const auto& p : g.params)
      HPA_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "SGD: group '", g.name,
                "' holds a tensor that is not a trainable leaf: ", p.desc());
    buffers_.emplace_back(g.params.size());
  }
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& group = groups_[gi];
    for (size_t i = 0; i < group.params.size(); ++i) {
      Tensor& w = group.params[i];
      Tensor g = w.grad();
      if (!g.defined()) continue;
      Tensor& v = buffers_[gi][i];
      if (!v.defined()) v = Tensor::zeros(w.shape(), w.dtype(), w.device());
      HPA_CHECK(w.is_cpu(), "SGD: no CUDA twin in this build for ", w.desc());
      dispatch_float(w.dtype(), "SGD", [&](auto tag) {
        using T = decltype(tag);
        kernels::sgd_update_cpu(w.data<T>(), v.data<T>(), g.data<T>(), w.numel(), group.args);
      });
    }
  }
}

void SGD::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

}  // namespace hpa
