// End to end on the CPU: TinyConvNet (conv-BN-ReLU twice, adaptive concat pooling,
// linear) trained with plain SGD + momentum on the toy 4-channel multi-label task must
// learn: held-out macro F1 >= 0.90 (chance level with these label rates is about 0.45),
// and the loss must fall by more than half. Also with the hard sampler keeping half the batch.
#include <gtest/gtest.h>

#include "train/tiny_trainer.h"

TEST(Learning, TinyConvNetLearnsTheToyTask) {
  hpa::TinyTrainOptions o;
  o.steps = 150;
  o.seed = 3;
  const auto r = hpa::train_tiny_convnet(o);
  EXPECT_LT(r.last_loss, 0.5 * r.first_loss) << "loss " << r.first_loss << " -> " << r.last_loss;
  EXPECT_GE(r.eval_macro_f1, 0.90);
  std::printf("loss %.4f -> %.4f, held-out macro F1 %.3f, %.1f s\n", r.first_loss, r.last_loss, r.eval_macro_f1,
              r.seconds);
}

TEST(Learning, HardSamplerStillLearns) {
  hpa::TinyTrainOptions o;
  o.steps = 150;
  o.seed = 4;
  o.hard_k = 16;
  const auto r = hpa::train_tiny_convnet(o);
  EXPECT_LT(r.last_loss, 0.5 * r.first_loss) << "loss " << r.first_loss << " -> " << r.last_loss;
  EXPECT_GE(r.eval_macro_f1, 0.85);
  std::printf("hard top-16: loss %.4f -> %.4f, held-out macro F1 %.3f\n", r.first_loss, r.last_loss, r.eval_macro_f1);
}
