#include "tensor/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "kernels/accumulate.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {
thread_local bool g_grad_enabled = true;
}

bool GradMode::enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return Edge{t.grad_fn(), t.impl().output_nr, nullptr};
  return Edge{nullptr, 0, t.impl_ptr()};
}

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs) {
  node->next.clear();
  for (const Tensor& t : inputs) node->next.push_back(edge_of(t));
  node->outputs.clear();
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl& o = outputs[i].impl();
    o.requires_grad = true;
    o.grad_fn = node;
    o.output_nr = static_cast<int>(i);
    node->outputs.push_back(OutputMeta{o.shape, o.dtype, o.storage->device});
  }
}

void accumulate_into(Tensor& dst, const Tensor& src) {
  HPA_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype() && dst.device() == src.device(),
            "gradient accumulation: ", src.desc(), " into ", dst.desc());
  dispatch_float(dst.dtype(), "gradient accumulation", [&](auto tag) {
    using T = decltype(tag);
    if (dst.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::accumulate_cuda(dst.data<T>(), src.data<T>(), dst.numel(),
                               static_cast<kernels::Stream>(cuda::stream(dst.device().index)));
#else
      HPA_FAIL("gradient accumulation: this build has no CUDA backend, got ", dst.desc());
#endif
    } else {
      kernels::accumulate_cpu(dst.data<T>(), src.data<T>(), dst.numel());
    }
  });
}

namespace {

// Depth-first post-order over the graph: every node appears after all nodes that
// consume its outputs when the list is reversed. Iterative, so deep nets (DenseNet,
// ResNet152) cannot overflow the stack.
std::vector<Node*> topological_order(const std::vector<Node*>& roots) {
  std::vector<Node*> post;
  std::unordered_set<Node*> seen;
  struct Frame {
    Node* node;
    size_t next_edge;
  };
  std::vector<Frame> stack;
  for (Node* r : roots) {
    if (!r || seen.count(r)) continue;
    seen.insert(r);
    stack.push_back({r, 0});
    while (!stack.empty()) {
      Frame& f = stack.back();
      if (f.next_edge < f.node->next.size()) {
        Node* child = f.node->next[f.next_edge++].fn.get();
        if (child && !seen.count(child)) {
          seen.insert(child);
          stack.push_back({child, 0});
        }
      } else {
        post.push_back(f.node);
        stack.pop_back();
      }
    }
  }
  return std::vector<Node*>(post.rbegin(), post.rend());
}

void add_to_slot(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;  // may alias; copied before any in-place accumulation below
    return;
  }
  // Another slot, a saved tensor or a view may share this storage: never add into it.
  if (slot.impl().storage.use_count() > 1 || slot.impl().storage == g.impl().storage) slot = slot.clone();
  accumulate_into(slot, g);
}

void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  if (!leaf.grad) {
    leaf.grad = g.clone().impl_ptr();
  } else {
    Tensor existing(leaf.grad);
    accumulate_into(existing, g);
  }
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) {
  NoGradGuard no_grad;
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::vector<Node*> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    if (!r.grad_fn()) {  // a leaf: its gradient is the seed itself
      accumulate_leaf(r.impl(), grads[i]);
      continue;
    }
    Node* n = r.grad_fn().get();
    auto& buf = buffers[n];
    buf.resize(n->outputs.size());
    add_to_slot(buf[static_cast<size_t>(r.impl().output_nr)], grads[i]);
    root_nodes.push_back(n);
  }

  for (Node* node : topological_order(root_nodes)) {
    HPA_CHECK(!node->released, "backward: the graph through '", node->name(), "' was already "
              "back-propagated and its saved tensors freed; run the forward pass again");
    auto it = buffers.find(node);
    if (it == buffers.end()) continue;  // unreachable from the roots' gradients
    std::vector<Tensor> grad_out = std::move(it->second);
    buffers.erase(it);
    grad_out.resize(node->outputs.size());
    for (size_t i = 0; i < grad_out.size(); ++i) {
      if (!grad_out[i].defined()) {
        const OutputMeta& m = node->outputs[i];
        grad_out[i] = Tensor::zeros(m.shape, m.dtype, m.device);
      }
    }
    std::vector<Tensor> grad_in = node->backward(grad_out);
    HPA_CHECK(grad_in.size() == node->next.size(), "backward of '", node->name(), "' returned ",
              grad_in.size(), " gradients for ", node->next.size(), " inputs");
    node->release_saved();
    node->released = true;
    for (size_t i = 0; i < grad_in.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.valid() || !grad_in[i].defined()) continue;
      if (e.leaf) {
        HPA_CHECK(grad_in[i].shape() == e.leaf->shape, "backward of '", node->name(),
                  "': gradient ", grad_in[i].desc(), " for input ", i, " of shape ", e.leaf->shape);
        accumulate_leaf(*e.leaf, grad_in[i]);
      } else {
        auto& buf = buffers[e.fn.get()];
        buf.resize(e.fn->outputs.size());
        add_to_slot(buf[static_cast<size_t>(e.output_nr)], grad_in[i]);
      }
    }
  }
}

}  // namespace hpa
