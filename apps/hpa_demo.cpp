// hpa_demo: the engine end to end on the CPU until hpa_train exists. Trains TinyConvNet
// on the toy 4-channel multi-label task and prints the loss as it falls, then the
// held-out macro F1. Flags only; the loop lives in train/tiny_trainer.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/error.h"
#include "train/tiny_trainer.h"

namespace {
void usage() {
  std::puts(
      "usage: hpa_demo [--steps N] [--batch B] [--size S] [--hard-k K] [--lr LR] [--seed S]\n"
      "Trains a small conv net (conv-BN-ReLU x2, adaptive concat pooling, linear) on a\n"
      "synthetic 4-channel multi-label task with BCE and SGD, printing the loss.");
}

long parse_int(const char* flag, const char* v) {
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  HPA_CHECK(end && *end == '\0', "hpa_demo: ", flag, " expects an integer, got '", v, "'");
  return x;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    hpa::TinyTrainOptions o;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        usage();
        return 0;
      }
      HPA_CHECK(i + 1 < argc, "hpa_demo: flag ", a, " needs a value (see --help)");
      const char* v = argv[++i];
      if (a == "--steps") o.steps = static_cast<int>(parse_int("--steps", v));
      else if (a == "--batch") o.batch = static_cast<int>(parse_int("--batch", v));
      else if (a == "--size") o.size = static_cast<int>(parse_int("--size", v));
      else if (a == "--hard-k") o.hard_k = static_cast<int>(parse_int("--hard-k", v));
      else if (a == "--seed") o.seed = static_cast<uint64_t>(parse_int("--seed", v));
      else if (a == "--lr") o.lr = std::strtod(v, nullptr);
      else HPA_FAIL("hpa_demo: unknown flag ", a, " (see --help)");
    }
    std::printf("hpa_demo: TinyConvNet on synthetic 4x%dx%d images, batch %d, %d steps, lr %g%s\n", o.size, o.size,
                o.batch, o.steps, o.lr, o.hard_k ? (", hard sampler top-" + std::to_string(o.hard_k)).c_str() : "");
    const auto r = hpa::train_tiny_convnet(o, [](int step, double loss) {
      std::printf("step %5d  loss %.4f\n", step, loss);
      std::fflush(stdout);
    });
    std::printf("held-out macro F1 %.3f (loss %.4f -> %.4f) in %.1f s\n", r.eval_macro_f1, r.first_loss, r.last_loss,
                r.seconds);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hpa_demo: error: %s\n", e.what());
    return 1;
  }
}
