// Factories of the backbones, one per reference family. make_model() (registry.cpp) maps
// names onto them; tests may call them directly.
#pragma once

#include "models/classifier.h"

namespace hpa {

// torchvision's ResNet: depth 18, 34 (BasicBlock), 50, 101, 152 (Bottleneck). resnet.cpp
ClassifierPtr make_resnet(int depth, const ModelOptions& options);
// torchvision's resnext50_32x4d (Bottleneck, 32 groups, width 4 per group). resnet.cpp
ClassifierPtr make_resnext50_32x4d(const ModelOptions& options);
// timm's seresnext50_32x4d (ResNeXt50 32x4d with a squeeze-excite module per block). resnet.cpp
ClassifierPtr make_se_resnext50_32x4d(const ModelOptions& options);
// torchvision's DenseNet-BC: depth 121 or 169 (growth 32, bn_size 4). densenet.cpp
ClassifierPtr make_densenet(int depth, const ModelOptions& options);
// timm's inception_v4. inception_v4.cpp
ClassifierPtr make_inception_v4(const ModelOptions& options);
// GapNet-PL (Rumetshofer et al., ICLR 2019). gapnet_pl.cpp
ClassifierPtr make_gapnet_pl(const ModelOptions& options);

}  // namespace hpa
