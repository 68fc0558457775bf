// hpa_model check: one forward and backward of a model on given weights and data, with
// everything a reference implementation can be compared against written to one
// .safetensors file. tools/torch_parity.py drives it against PyTorch.
//
// Order matters for exactness: the model is converted to --dtype *before* the weights are
// loaded (load_state_dict converts each file tensor straight to the model's dtype), so f64
// weights reach an f64 model without a round trip through f32. The loss is PyTorch's
// BCEWithLogitsLoss default: the mean over all N x K elements (the mean over samples of
// bce_with_logits_per_sample, which is itself the mean over the K classes).
//
// Output keys: "logits" [N, K], "loss" (0-D), the gradient of every parameter under the
// parameter's own state_dict name, and in training mode every buffer after the forward
// (BatchNorm's updated running statistics and num_batches_tracked) as "buffers.<name>".
// Dropout masks come from a generator seeded with 0: they differ from any other
// framework's, so comparisons use dropout probability 0.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "apps/common/args.h"
#include "apps/hpa_model/commands.h"
#include "apps/common/model_flags.h"
#include "tensor/npy.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"

namespace hpa::cli {

namespace {

Tensor load_floating_npy(const std::string& path, const char* flag) {
  Tensor t = load_npy(path);
  HPA_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, "--", flag, " ", path, " holds ", t.desc(),
            "; expected f32 or f64");
  return t;
}

}  // namespace

int check(int argc, char** argv) {
  Args args(argc, argv, {"train", "eval"});
  if (args.help()) {
    std::printf(
        "usage: hpa_model check --model M --head gap|acp [--buffering S] --classes K\n"
        "                       --weights W.safetensors --input X.npy --target Y.npy --out O.safetensors\n"
        "                       [--train|--eval] [--dtype f32|f64]\n"
        "  Builds model M with C = X's channels, converts it to\n"
        "  --dtype (default f32), loads W strictly (every missing, unexpected or shape-mismatched key is\n"
        "  reported), runs one forward of X [N, C, H, W] in training (default) or evaluation mode,\n"
        "  loss = mean over all N x K elements of binary cross-entropy on the logits against Y [N, K]\n"
        "  (PyTorch's BCEWithLogitsLoss), and one backward. Writes to O: logits, loss, the gradient of\n"
        "  every parameter under its own name and, in training mode, every buffer after the forward as\n"
        "  buffers.<name>. Dropout masks are the engine's own (seed 0): compare with dropout 0.\n"
        "  models: %s\n",
        known_models().c_str());
    return 0;
  }
  ModelFlags flags = read_model_flags(args, "", 0);
  const std::string weights_path = args.required("weights");
  const std::string input_path = args.required("input");
  const std::string target_path = args.required("target");
  const std::string out_path = args.required("out");
  const bool train_flag = args.flag("train"), eval_flag = args.flag("eval");
  const DType dtype = read_dtype_flag(args, "f32");
  args.finish();
  if (train_flag && eval_flag) throw usage_error("--train and --eval exclude each other");
  const bool training = !eval_flag;

  Tensor x = load_floating_npy(input_path, "input");
  Tensor y = load_floating_npy(target_path, "target");
  HPA_CHECK(x.dim() == 4 && x.size(0) > 0 && x.size(1) > 0, "--input ", input_path,
            " must be [N, C, H, W] with N, C > 0, got ", x.shape());
  HPA_CHECK(y.shape() == Shape({x.size(0), flags.options.classes}), "--target ", target_path,
            " must be [N, K] = [", x.size(0), ", ", flags.options.classes,
            "] (N from --input, K = --classes), got ", y.shape());

  Generator dropout_gen(0);
  flags.options.in_channels = static_cast<int>(x.size(1));
  flags.options.dropout_gen = &dropout_gen;
  ClassifierPtr model = make_model(flags.name, flags.options);
  model->to(dtype);
  const NamedTensors weights = load_safetensors(weights_path);
  try {
    model->load_state_dict(weights, /*strict=*/true);
  } catch (const Error& e) {
    HPA_FAIL("--weights ", weights_path, " does not fit ", flags.name, " (head ", flags.options.head,
             ", buffering ", buffering_str(flags.options.buffering), ", ", x.size(1), " input channels, ",
             flags.options.classes, " classes): ", e.what());
  }
  model->train(training);

  x = x.to(dtype);
  y = y.to(dtype);
  const Tensor logits = (*model)(x);
  HPA_CHECK(logits.shape() == y.shape(), flags.name, " returned logits ", logits.shape(), " for input ",
            x.shape(), ", expected ", y.shape());
  const Tensor loss = mean(bce_with_logits_per_sample(logits, y));
  loss.backward();

  NamedTensors out{{"logits", logits.detach()}, {"loss", loss.detach()}};
  std::vector<std::string> no_grad;
  for (const auto& [name, p] : model->named_parameters()) {
    const Tensor g = p.grad();
    if (g.defined()) {
      out.emplace_back(name, g);
    } else {
      no_grad.push_back(name);
    }
  }
  const size_t gradients = out.size() - 2;
  size_t buffers = 0;
  if (training) {
    for (const auto& [name, b] : model->named_buffers()) {
      out.emplace_back("buffers." + name, b);
      ++buffers;
    }
  }
  const std::map<std::string, std::string> metadata = {{"model", flags.name},
                                                       {"head", flags.options.head},
                                                       {"buffering", buffering_str(flags.options.buffering)},
                                                       {"mode", training ? "train" : "eval"},
                                                       {"dtype", dtype_name(dtype)}};
  save_safetensors(out_path, out, metadata);

  for (const auto& name : no_grad)
    std::fprintf(stderr, "hpa_model check: warning: parameter %s received no gradient (not written)\n",
                 name.c_str());
  const std::string buffer_note = training ? ", " + std::to_string(buffers) + " buffers" : "";
  std::printf("check: %s %s %s, input %s: loss %.17g; %zu gradients%s -> %s\n", flags.name.c_str(),
              training ? "train" : "eval", dtype_name(dtype), shape_str(x.shape()).c_str(), loss.item(),
              gradients, buffer_note.c_str(), out_path.c_str());
  return 0;
}

}  // namespace hpa::cli
