// Classifier: what every backbone in models/ is -- a Module with the reference
// implementation's structure and state_dict key names (torchvision, timm), whose input
// stem takes `in_channels` channels and whose head ends in `classes` outputs.
//
// The paper's adaptation (Zhang et al. 2021) is expressed by three things every model
// reports: the stem convolution's weight key (to widen 3-channel pretrained weights to 4
// channels), the name of the head child (left fresh when loading ImageNet weights, and the
// "head" parameter group) and the pooling it uses before the head.
//
// Heads (ModelOptions::head):
//  - gap: the reference's own head: global average pooling -> Linear(C, classes).
//  - acp: adaptive concat pooling (avg || max, 2C features) -> the buffering layers ->
//    the output layer. With buffering = {(u1, p1), (u2, p2), ...} the head child is a
//    Sequential, in this exact order:
//        BatchNorm1d(2C), Dropout(p1), Linear(2C, u1), ReLU,
//        BatchNorm1d(u1), Dropout(p2), Linear(u1, u2), ReLU,
//        ...
//        BatchNorm1d(u_last), Linear(u_last, classes)
//    i.e. each buffering layer is BN -> dropout -> linear -> ReLU on its input, and the
//    output layer is BN -> linear (fastai's create_head order, with one dropout per
//    buffering layer). Its keys are "<head>.<index>.<param>" with the indices above
//    (dropout and ReLU hold no parameters but keep their index, as in PyTorch).
//    With no buffering layers: BatchNorm1d(2C), Linear(2C, classes).
//    The paper's settings: ResNet50 "1024:0.5", ResNet101 "4096:0.25,1024:0.5".
//  GapNet-PL has its own published head and accepts only `gap` (its own).
//  Channel order of the pooled features: average first, then max (the engine's
//  adaptive_concat_pool2d). fastai's AdaptiveConcatPool2d, which the paper's code used,
//  puts max first: weights of a fastai-trained acp head need the first BatchNorm1d's
//  entries and the first Linear's input columns swapped by halves.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/layers.h"

namespace hpa {

struct BufferingLayer {
  int units = 0;
  double dropout = 0.0;
};

// Parses "1024:0.5" or "4096:0.25,1024:0.5" ("" or "none": no buffering layers); throws
// hpa::Error naming the bad item.
std::vector<BufferingLayer> parse_buffering(const std::string& spec);
std::string buffering_str(const std::vector<BufferingLayer>& layers);

struct ModelOptions {
  int in_channels = 4;
  int classes = 28;
  std::string head = "acp";  // "gap" or "acp"
  std::vector<BufferingLayer> buffering;
  uint64_t seed = 0;               // initialization
  Generator* dropout_gen = nullptr;  // dropout masks (process default when null)

  // The reference ImageNet configuration: 3 channels, 1000 classes, the gap head (what
  // torchvision's and timm's pretrained weights were trained with).
  static ModelOptions imagenet() {
    ModelOptions o;
    o.in_channels = 3;
    o.classes = 1000;
    o.head = "gap";
    return o;
  }
};

class Classifier : public Module {
 public:
  // State-dict key of the first convolution's weight ("conv1.weight").
  virtual std::string stem_key() const = 0;
  // Name of the head child ("fc", "classifier", "last_linear").
  virtual std::string head_name() const = 0;
  // Channels that reach the pooling (2048 for resnet50).
  virtual int feature_channels() const = 0;

  // Parameter groups for the optimizer: "encoder" (everything outside the head) and
  // "head", each in state_dict order.
  std::vector<std::pair<std::string, std::vector<Tensor>>> parameter_groups() const;
};
using ClassifierPtr = std::shared_ptr<Classifier>;

// The head child for `options` on `channels` backbone features (see above) and the pooling
// module that goes before it (GlobalAvgPool2d for gap, AdaptiveConcatPool2d for acp).
ModulePtr make_head(int channels, const ModelOptions& options, Generator& gen);
ModulePtr make_head_pool(const ModelOptions& options);

// ---- registry ---------------------------------------------------------------------------
// make_model("resnet50", options); an unknown name throws hpa::Error listing the known ones.
ClassifierPtr make_model(const std::string& name, const ModelOptions& options = {});
std::vector<std::string> model_names();

// ---- pretrained weights -------------------------------------------------------------------
enum class StemFill { copy_red, mean_rgb };
// Loads `state` (e.g. converted torchvision ImageNet weights) into `model`:
//  - the stem weight, when the file has 3 input channels and the model more, is widened:
//    channel 3 (yellow) and beyond are a copy of channel 0 (red) or the mean of RGB;
//  - the head's keys are skipped when their shapes differ (a fresh head), as are keys of a
//    pretrained head the model does not have;
//  - every other key must match exactly (strict): missing, unexpected or mismatched keys
//    are listed in one hpa::Error.
// Returns a one-line report of what was adapted and skipped.
std::string load_pretrained(Classifier& model, const NamedTensors& state, StemFill fill = StemFill::copy_red);

}  // namespace hpa
