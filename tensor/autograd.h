// Define-by-run reverse-mode autograd.
//
// Every differentiable op that sees an input with requires_grad (while grad mode is on)
// creates a Node: it saves what its backward needs, points to the nodes (or leaves) that
// produced its inputs through `next` edges, and becomes the grad_fn of its outputs.
// Tensor::backward() orders the reachable nodes topologically (deterministic depth-first
// post-order), runs each node's backward once with the summed gradient of each of its
// outputs, and accumulates (+=) into the .grad of leaves. A tensor that feeds several ops
// therefore receives the sum of their gradients. After a node has run, its saved tensors
// are released, so activation memory is freed during backward; a second backward through
// the same graph is an error.
//
// Backward itself runs with grad mode off: no higher-order gradients.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace hpa {

struct Edge {
  std::shared_ptr<Node> fn;          // producer node of the input (null for a leaf)
  int output_nr = 0;                 // which output of fn
  std::shared_ptr<TensorImpl> leaf;  // the leaf itself when fn is null and it needs a grad
  bool valid() const { return fn != nullptr || leaf != nullptr; }
};

// What the engine needs to know about each output to materialize a zero gradient when a
// node's output received none (e.g. one half of a split that was never used).
struct OutputMeta {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
};

struct Node {
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // grad_outputs: one defined gradient per output. Returns one gradient per entry of
  // `next` (an undefined Tensor where that input needs none). A returned gradient may
  // alias grad_outputs; the engine copies before accumulating into a leaf.
  virtual std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) = 0;
  // Frees saved tensors; called by the engine once the node has run.
  virtual void release_saved() {}

  std::vector<Edge> next;
  std::vector<OutputMeta> outputs;
  bool released = false;
};

// Thread-local switch; backward and optimizers run with it off.
struct GradMode {
  static bool enabled();
  static void set_enabled(bool on);
};

class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of the (defined) tensors requires a gradient.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// The edge that a gradient for `t` must travel (invalid when t needs no gradient).
Edge edge_of(const Tensor& t);

// Wires `node` into the graph: next = edges of inputs (undefined tensors give invalid
// edges), and the outputs get node as grad_fn with output_nr 0, 1, ...
void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs);

// Runs the backward pass from `roots` seeded with `grads` (one per root).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads);

// dst += src without recording (same shape, dtype, device). Used by the engine and by
// ops' backward passes to sum gradients.
void accumulate_into(Tensor& dst, const Tensor& src);

}  // namespace hpa
