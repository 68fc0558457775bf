// The demo's training loop, shared by apps/hpa_demo and the learning test: TinyConvNet on
// the toy 4-channel task, per-sample BCE-with-logits, optional hard-sample top-K, SGD with
// momentum. Reports the loss every `log_every` steps through a callback.
#pragma once

#include <cstdint>
#include <functional>

namespace hpa {

struct TinyTrainOptions {
  int steps = 300;
  int batch = 32;
  int size = 24;
  int hard_k = 0;  // 0: back-propagate every sample; else the K largest losses
  double lr = 0.05;
  double momentum = 0.9;
  uint64_t seed = 1;
  int eval_count = 256;
  int log_every = 25;
};

struct TinyTrainResult {
  double first_loss = 0;    // mean loss of the first logged window
  double last_loss = 0;     // mean loss of the last logged window
  double eval_macro_f1 = 0; // held-out macro F1 at threshold 0.5
  double seconds = 0;
};

TinyTrainResult train_tiny_convnet(const TinyTrainOptions& options,
                                   const std::function<void(int step, double loss)>& on_log = {});

}  // namespace hpa
