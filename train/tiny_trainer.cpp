#include "train/tiny_trainer.h"

#include <chrono>
#include <cmath>

#include "data/toy_patterns.h"
#include "models/tiny_convnet.h"
#include "optim/metrics.h"
#include "optim/sgd.h"
#include "tensor/ops.h"

namespace hpa {

namespace {
// Rows [first, first+count) of a toy batch as tensors.
std::pair<Tensor, Tensor> to_tensors(const data::ToyBatch& b) {
  Tensor x = Tensor::from_vector(b.images, {b.count, 4, b.size, b.size});
  Tensor y = Tensor::from_vector(b.labels, {b.count, data::kToyClasses});
  return {x, y};
}
}  // namespace

TinyTrainResult train_tiny_convnet(const TinyTrainOptions& o, const std::function<void(int, double)>& on_log) {
  HPA_CHECK(o.steps > 0 && o.batch > 1 && o.log_every > 0, "train_tiny_convnet: steps, batch (>1) and log_every "
            "must be positive");
  HPA_CHECK(o.hard_k >= 0 && o.hard_k <= o.batch, "train_tiny_convnet: hard_k ", o.hard_k, " outside [0, batch ",
            o.batch, "]");
  const auto start = std::chrono::steady_clock::now();
  TinyConvNet net(4, 8, 16, data::kToyClasses, o.seed);
  kernels::SgdArgs args;
  args.lr = o.lr;
  args.momentum = o.momentum;
  SGD sgd({ParamGroup{"all", net.parameters(), args}});

  TinyTrainResult result;
  double window = 0;
  int window_n = 0;
  bool first_window = true;
  for (int step = 1; step <= o.steps; ++step) {
    auto [x, y] = to_tensors(data::make_toy_batch(o.batch, o.size, o.seed * 1000003ull + static_cast<uint64_t>(step)));
    Tensor per_sample = bce_with_logits_per_sample(net.forward(x, true), y);
    Tensor loss = o.hard_k > 0 ? mean(hard_sample_topk(per_sample, o.hard_k).losses) : mean(per_sample);
    const double batch_loss = mean(per_sample).item();
    HPA_CHECK(std::isfinite(batch_loss), "train_tiny_convnet: loss is ", batch_loss, " at step ", step);
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    window += batch_loss;
    ++window_n;
    if (step % o.log_every == 0 || step == o.steps) {
      const double avg = window / window_n;
      if (first_window) result.first_loss = avg;
      first_window = false;
      result.last_loss = avg;
      if (on_log) on_log(step, avg);
      window = 0;
      window_n = 0;
    }
  }

  // Held-out evaluation with running BN statistics.
  NoGradGuard ng;
  auto eval = data::make_toy_batch(o.eval_count, o.size, o.seed + 0xE7A1ull);
  auto [x, y] = to_tensors(eval);
  const auto probs = sigmoid(net.forward(x, false)).to_vector<float>();
  result.eval_macro_f1 = macro_f1(probs, eval.labels, eval.count, data::kToyClasses, 0.5);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace hpa
