// Training checkpoints: a small Conv2d/BatchNorm/Dropout/Linear model trained a few SGD
// steps (two parameter groups, momentum, the cosine schedule), checkpointed and restored
// into a differently initialized model and optimizer, must then continue bit-exactly like
// the original (losses, weights, BatchNorm statistics, momentum, dropout masks). Also: only
// existing momentum buffers are saved; a write that dies half way leaves the previous
// checkpoint loadable; every strictness error names the file and the keys.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>

#include "layers/layers.h"
#include "tensor/file_io.h"
#include "tensor/safetensors.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"

using namespace hpa;
namespace fs = std::filesystem;

namespace {

using hpa::test::TempDir;

std::string raw_bytes(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  return h.numel() ? std::string(static_cast<const char*>(h.data_ptr()), h.nbytes()) : std::string();
}

// conv -> bn -> relu -> flatten -> dropout -> linear; `init` seeds the weights, `dropout`
// draws the masks.
std::shared_ptr<Sequential> make_net(uint64_t init, Generator* dropout, int classes = 3) {
  Generator g(init);
  return std::make_shared<Sequential>(std::vector<ModulePtr>{
      std::make_shared<Conv2d>(Conv2dSpec::make(3, 4, 3, 1, 1, 1, /*bias=*/true), g),
      std::make_shared<BatchNorm>(4, 2), std::make_shared<ReLU>(), std::make_shared<Flatten>(),
      std::make_shared<Dropout>(0.25, false, dropout), std::make_shared<Linear>(4 * 5 * 5, classes, g)});
}

// Encoder (conv, bn) at a third of the rate, head (linear) at the full rate, with Nesterov.
SGD make_sgd(const Module& model) {
  ParamGroup encoder, head;
  encoder.name = "encoder";
  head.name = "head";
  encoder.args.momentum = head.args.momentum = 0.9;
  encoder.args.weight_decay = 1e-4;
  head.args.nesterov = true;
  encoder.lr_scale = 1.0 / 3.0;
  for (const auto& [name, p] : model.named_parameters())
    (name.rfind("5.", 0) == 0 ? head : encoder).params.push_back(p);
  return SGD({encoder, head});
}

struct Batch {
  Tensor x, y;
};

Batch make_batch(uint64_t seed) {
  Generator g(seed);
  Batch b;
  b.x = Tensor::randn({6, 3, 5, 5}, DType::f32, Device::cpu(), &g);
  std::vector<float> y(18);
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>((i * 7 + seed) % 3 == 0);
  b.y = Tensor::from_vector(y, {6, 3});
  return b;
}

const CosineCyclicSchedule kSchedule(0.1, 0.001, 4);

double train_step(Module& model, SGD& sgd, int step) {
  const Batch b = make_batch(100 + static_cast<uint64_t>(step));
  sgd.zero_grad();
  Tensor loss = mean(bce_with_logits_per_sample(model(b.x), b.y));
  loss.backward();
  sgd.step(kSchedule);
  return loss.item();
}

// Every byte of the model's state and the optimizer's buffers, keyed like the checkpoint.
std::map<std::string, std::string> snapshot(const Module& model, const SGD& sgd) {
  std::map<std::string, std::string> out;
  for (const auto& [k, t] : model.state_dict()) out["model." + k] = raw_bytes(t);
  for (size_t g = 0; g < sgd.groups().size(); ++g)
    for (size_t i = 0; i < sgd.groups()[g].params.size(); ++i) {
      const Tensor& v = sgd.momentum_buffer(g, i);
      out["momentum." + std::to_string(g) + "." + std::to_string(i)] = v.defined() ? raw_bytes(v) : "<none>";
    }
  return out;
}

}  // namespace

TEST(Checkpoint, ResumedTrainingContinuesBitExactly) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  Generator gen_a(7);
  auto a = make_net(1, &gen_a);
  SGD sgd_a = make_sgd(*a);
  for (int s = 0; s < 3; ++s) train_step(*a, sgd_a, s);
  save_checkpoint(path, *a, sgd_a, /*epoch=*/2, gen_a,
                  {{"model", "tiny"}, {"options", "{\"dropout\": 0.25}"}});
  const auto saved = snapshot(*a, sgd_a);
  const uint64_t saved_offset = gen_a.offset();
  ASSERT_GT(saved_offset, 0u);  // the dropout masks drew from it

  std::vector<double> losses_a;
  for (int s = 3; s < 8; ++s) losses_a.push_back(train_step(*a, sgd_a, s));

  // A different initialization, RNG stream and optimizer state, then the checkpoint.
  Generator gen_b(12345);
  auto b = make_net(2, &gen_b);
  SGD sgd_b = make_sgd(*b);
  train_step(*b, sgd_b, 50);
  ASSERT_NE(snapshot(*b, sgd_b), saved);
  const CheckpointInfo info = load_checkpoint(path, *b, sgd_b, gen_b);
  EXPECT_EQ(info.epoch, 2);
  EXPECT_EQ(info.steps, 3);
  EXPECT_EQ(sgd_b.steps(), 3);
  EXPECT_EQ(info.rng_seed, 7u);
  EXPECT_EQ(info.rng_offset, saved_offset);
  EXPECT_EQ(gen_b.seed(), 7u);
  EXPECT_EQ(gen_b.offset(), saved_offset);
  EXPECT_EQ(info.fields,
            (std::map<std::string, std::string>{{"model", "tiny"}, {"options", "{\"dropout\": 0.25}"}}));
  EXPECT_EQ(snapshot(*b, sgd_b), saved);

  std::vector<double> losses_b;
  for (int s = 3; s < 8; ++s) losses_b.push_back(train_step(*b, sgd_b, s));
  EXPECT_EQ(losses_b, losses_a);  // exact
  EXPECT_EQ(snapshot(*b, sgd_b), snapshot(*a, sgd_a));
  EXPECT_EQ(gen_b.offset(), gen_a.offset());
  EXPECT_EQ(sgd_b.steps(), sgd_a.steps());

  const CheckpointInfo header_only = read_checkpoint_info(path);
  EXPECT_EQ(header_only.fields.at("model"), "tiny");
  EXPECT_EQ(header_only.steps, 3);
}

TEST(Checkpoint, WithoutRestoringTheResumeWouldDiffer) {
  // The control for the test above: the same weights but the optimizer state or the RNG
  // state left behind give a different continuation, so the bit-exact match is not free.
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  Generator gen_a(7);
  auto a = make_net(1, &gen_a);
  SGD sgd_a = make_sgd(*a);
  for (int s = 0; s < 3; ++s) train_step(*a, sgd_a, s);
  save_checkpoint(path, *a, sgd_a, 0, gen_a);
  const double next_a = train_step(*a, sgd_a, 3);
  const auto after_a = snapshot(*a, sgd_a);

  Generator gen_b(7);
  auto b = make_net(1, &gen_b);
  SGD sgd_b = make_sgd(*b);
  load_checkpoint(path, *b, sgd_b, gen_b);
  gen_b.set_state(7, 0);  // the RNG not restored
  EXPECT_NE(train_step(*b, sgd_b, 3), next_a);

  Generator gen_c(7);
  auto c = make_net(1, &gen_c);
  SGD sgd_c = make_sgd(*c);
  load_checkpoint(path, *c, sgd_c, gen_c);
  for (size_t g = 0; g < sgd_c.groups().size(); ++g)  // the momentum not restored
    for (size_t i = 0; i < sgd_c.groups()[g].params.size(); ++i) sgd_c.set_momentum_buffer(g, i, Tensor());
  EXPECT_EQ(train_step(*c, sgd_c, 3), next_a);  // the forward does not see momentum...
  EXPECT_NE(snapshot(*c, sgd_c), after_a);      // ...the update does
}

TEST(Checkpoint, SavesOnlyTheMomentumBuffersThatExist) {
  TempDir dir;
  Generator gen(3);
  auto model = make_net(1, &gen);
  SGD sgd = make_sgd(*model);
  // Before any step: no buffers at all.
  save_checkpoint(dir.file("step0.safetensors"), *model, sgd, 0, gen);
  for (const auto& e : read_safetensors_header(dir.file("step0.safetensors")).entries)
    EXPECT_EQ(e.name.rfind("model.", 0), 0u) << e.name;

  // A step where only the head has gradients: only the head gets buffers.
  const Batch batch = make_batch(1);
  sgd.zero_grad();
  Tensor features =
      model->child("3")(model->child("2")(model->child("1")(model->child("0")(batch.x)))).detach();
  mean(bce_with_logits_per_sample(model->child("5")(features), batch.y)).backward();
  sgd.step();
  save_checkpoint(dir.file("head.safetensors"), *model, sgd, 0, gen);
  std::vector<std::string> momentum;
  for (const auto& e : read_safetensors_header(dir.file("head.safetensors")).entries)
    if (e.name.rfind("optim.", 0) == 0) momentum.push_back(e.name);
  EXPECT_EQ(momentum, (std::vector<std::string>{"optim.momentum.5.weight", "optim.momentum.5.bias"}));

  // Loading it into an optimizer that has every buffer clears the encoder's.
  Generator gen2(3);
  auto other = make_net(1, &gen2);
  SGD other_sgd = make_sgd(*other);
  train_step(*other, other_sgd, 0);
  ASSERT_TRUE(other_sgd.momentum_buffer(0, 0).defined());
  load_checkpoint(dir.file("head.safetensors"), *other, other_sgd, gen2);
  for (size_t i = 0; i < other_sgd.groups()[0].params.size(); ++i)
    EXPECT_FALSE(other_sgd.momentum_buffer(0, i).defined());
  EXPECT_EQ(raw_bytes(other_sgd.momentum_buffer(1, 0)), raw_bytes(sgd.momentum_buffer(1, 0)));
  EXPECT_EQ(other_sgd.steps(), 1);
}

TEST(Checkpoint, AFailedSaveLeavesThePreviousCheckpointLoadable) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  Generator gen(7);
  auto model = make_net(1, &gen);
  SGD sgd = make_sgd(*model);
  for (int s = 0; s < 2; ++s) train_step(*model, sgd, s);
  save_checkpoint(path, *model, sgd, 1, gen);
  const auto saved = snapshot(*model, sgd);
  for (int s = 2; s < 4; ++s) train_step(*model, sgd, s);

  // The process "dies" half way through writing the next checkpoint, then at the rename.
  for (int64_t after : {int64_t{1000}, int64_t{1} << 40}) {
    inject_atomic_write_failure(after);
    EXPECT_HPA_ERROR(save_checkpoint(path, *model, sgd, 2, gen), "save_safetensors", path,
                     "injected failure");
    EXPECT_EQ(dir.count(), 1u);  // no temporary left behind
    Generator gen2(0);
    auto restored = make_net(9, &gen2);
    SGD restored_sgd = make_sgd(*restored);
    const CheckpointInfo info = load_checkpoint(path, *restored, restored_sgd, gen2);
    EXPECT_EQ(info.epoch, 1);
    EXPECT_EQ(info.steps, 2);
    EXPECT_EQ(snapshot(*restored, restored_sgd), saved);
  }
  // Into a folder that does not exist: an error naming the path, nothing written.
  EXPECT_HPA_ERROR(save_checkpoint(dir.file("nope/ckpt.safetensors"), *model, sgd, 2, gen),
                   "nope/ckpt.safetensors");
  EXPECT_EQ(dir.count(), 1u);
}

// ---- strictness -------------------------------------------------------------------------------

class CheckpointErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("ckpt.safetensors");
    model_ = make_net(1, &gen_);
    sgd_ = std::make_unique<SGD>(make_sgd(*model_));
    train_step(*model_, *sgd_, 0);
    save_checkpoint(path_, *model_, *sgd_, 0, gen_, {{"model", "tiny"}});
  }
  // Rewrites the checkpoint with `edit` applied to its tensors and metadata.
  std::string edited(const std::function<void(NamedTensors&, SafetensorsMetadata&)>& edit) {
    SafetensorsMetadata meta;
    NamedTensors tensors = load_safetensors(path_, &meta);
    edit(tensors, meta);
    const std::string out = dir_.file("edited.safetensors");
    save_safetensors(out, tensors, meta);
    return out;
  }
  TempDir dir_;
  std::string path_;
  Generator gen_{7};
  std::shared_ptr<Sequential> model_;
  std::unique_ptr<SGD> sgd_;
};

TEST_F(CheckpointErrors, ModelKeysMissingOrMismatched) {
  Generator g(1);
  auto wider = make_net(5, &g, /*classes=*/4);
  SGD wider_sgd = make_sgd(*wider);
  const auto before = snapshot(*wider, wider_sgd);
  EXPECT_HPA_ERROR(load_checkpoint(path_, *wider, wider_sgd, g), "load_checkpoint: " + path_, "4 mismatched",
                   "model.5.weight (file f32[3, 100], model f32[4, 100])", "model.5.bias",
                   "optim.momentum.5.weight (file f32[3, 100], parameter f32[4, 100])");
  EXPECT_EQ(snapshot(*wider, wider_sgd), before);  // untouched

  const std::string dropped = edited([](NamedTensors& t, SafetensorsMetadata&) {
    t.erase(
        std::remove_if(t.begin(), t.end(), [](const auto& e) { return e.first == "model.1.running_var"; }),
        t.end());
  });
  Generator g2(1);
  auto fresh = make_net(5, &g2);
  SGD fresh_sgd = make_sgd(*fresh);
  EXPECT_HPA_ERROR(load_checkpoint(dropped, *fresh, fresh_sgd, g2), dropped,
                   "1 missing: model.1.running_var");
}

TEST_F(CheckpointErrors, UnexpectedKeys) {
  const std::string extra = edited([](NamedTensors& t, SafetensorsMetadata&) {
    t.emplace_back("model.9.weight", Tensor::zeros({2}));
    t.emplace_back("ema.weight", Tensor::zeros({2}));
  });
  Generator g(1);
  auto fresh = make_net(5, &g);
  SGD fresh_sgd = make_sgd(*fresh);
  const auto before = snapshot(*fresh, fresh_sgd);
  EXPECT_HPA_ERROR(load_checkpoint(extra, *fresh, fresh_sgd, g), extra,
                   "2 unexpected: model.9.weight, ema.weight");
  const std::string other =
      edited([](NamedTensors& t, SafetensorsMetadata&) { t.emplace_back("ema.weight", Tensor::zeros({2})); });
  EXPECT_HPA_ERROR(load_checkpoint(other, *fresh, fresh_sgd, g), other, "1 unexpected: ema.weight");
  EXPECT_EQ(snapshot(*fresh, fresh_sgd), before);

  // Momentum for a parameter the optimizer does not hold (it covers only the head here).
  ParamGroup head;
  head.name = "head";
  head.args.momentum = 0.9;
  for (const auto& [name, p] : fresh->named_parameters())
    if (name.rfind("5.", 0) == 0) head.params.push_back(p);
  SGD head_only({head});
  EXPECT_HPA_ERROR(load_checkpoint(path_, *fresh, head_only, g), path_,
                   "optim.momentum.0.weight (not a parameter of the optimizer)");

  const std::string bad_shape = edited([](NamedTensors& t, SafetensorsMetadata&) {
    for (auto& [k, v] : t)
      if (k == "optim.momentum.5.bias") v = Tensor::zeros({7});
  });
  EXPECT_HPA_ERROR(load_checkpoint(bad_shape, *fresh, fresh_sgd, g), bad_shape,
                   "1 mismatched: optim.momentum.5.bias (file f32[7], parameter f32[3])");
  EXPECT_EQ(snapshot(*fresh, fresh_sgd), before);
}

TEST_F(CheckpointErrors, Metadata) {
  Generator g(1);
  auto fresh = make_net(5, &g);
  SGD fresh_sgd = make_sgd(*fresh);
  const std::string plain = dir_.file("plain.safetensors");
  save_safetensors(plain, model_->state_dict());
  EXPECT_HPA_ERROR(load_checkpoint(plain, *fresh, fresh_sgd, g), plain,
                   "not an hpa training checkpoint (metadata 'hpa.format' is missing");
  EXPECT_HPA_ERROR(read_checkpoint_info(plain), "read_checkpoint_info: " + plain,
                   "not an hpa training checkpoint");
  const std::string v2 = edited([](NamedTensors&, SafetensorsMetadata& m) { m["hpa.format_version"] = "2"; });
  EXPECT_HPA_ERROR(load_checkpoint(v2, *fresh, fresh_sgd, g), v2, "checkpoint format version 2",
                   "reads version 1");
  const std::string bad_steps = edited([](NamedTensors&, SafetensorsMetadata& m) { m["hpa.steps"] = "12x"; });
  EXPECT_HPA_ERROR(load_checkpoint(bad_steps, *fresh, fresh_sgd, g), bad_steps, "'hpa.steps' holds '12x'");
  const std::string no_seed = edited([](NamedTensors&, SafetensorsMetadata& m) { m.erase("hpa.rng_seed"); });
  EXPECT_HPA_ERROR(load_checkpoint(no_seed, *fresh, fresh_sgd, g), no_seed, "'hpa.rng_seed' is missing");
  const std::string negative = edited([](NamedTensors&, SafetensorsMetadata& m) { m["hpa.steps"] = "-3"; });
  EXPECT_HPA_ERROR(load_checkpoint(negative, *fresh, fresh_sgd, g), negative, "'hpa.steps' is negative");

  EXPECT_HPA_ERROR(save_checkpoint(dir_.file("x.safetensors"), *model_, *sgd_, 0, gen_, {{"hpa.epoch", "9"}}),
                   "field 'hpa.epoch'", "reserved");
  // An optimizer over tensors that are not the model's.
  Generator g2(1);
  auto stranger = make_net(5, &g2);
  EXPECT_HPA_ERROR(save_checkpoint(dir_.file("x.safetensors"), *model_, make_sgd(*stranger), 0, gen_),
                   "optimizer group 'encoder' parameter 0", "is not a parameter of the model");
  EXPECT_FALSE(fs::exists(dir_.file("x.safetensors")));
}
