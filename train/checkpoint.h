// Training checkpoints: everything needed to resume a run bit-exactly, in one safetensors
// file (tensor/safetensors.h) that PyTorch-side tools can read too.
//
// Contents:
//  - "model.<key>": the model's state_dict (parameters and buffers, PyTorch key names);
//  - "optim.momentum.<key>": the SGD momentum buffer of parameter <key>, only for the
//    parameters that have one (a parameter gets it at its first update);
//  - __metadata__: "hpa.format" = "hpa-checkpoint", "hpa.format_version" = "1",
//    "hpa.steps" (SGD::steps, the schedule's position), "hpa.epoch", "hpa.rng_seed" and
//    "hpa.rng_offset" (the Generator's Philox state), plus the caller's free-form string
//    fields (model name, options, ...) under their own names, which must not start with
//    "hpa.".
//
// Writes are atomic: a failed or interrupted save leaves the previous checkpoint intact.
// Loading is strict and all-or-nothing for the optimizer state: every key of the file must
// land somewhere and every model entry must be present, else one hpa::Error names the file
// and lists the missing and unexpected keys (and the model is left untouched).
//
// The optimizer's parameters are matched to the model's by identity (the same tensors),
// so the optimizer must be built over the model it is saved or loaded with.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "layers/module.h"
#include "optim/sgd.h"
#include "tensor/random.h"

namespace hpa {

struct CheckpointInfo {
  int64_t epoch = 0;
  int64_t steps = 0;  // optimizer steps
  uint64_t rng_seed = 0, rng_offset = 0;
  std::map<std::string, std::string> fields;  // the caller's free-form fields
};

inline constexpr int kCheckpointFormatVersion = 1;

// Writes model, optimizer, `epoch`, `gen`'s state and `fields` to `path`, atomically.
void save_checkpoint(const std::string& path, const Module& model, const SGD& sgd, int64_t epoch,
                     const Generator& gen, const std::map<std::string, std::string>& fields = {});

// Restores a checkpoint into an existing model and optimizer (same architecture, same
// parameter groups) and `gen`; returns the epoch, steps, RNG state and free-form fields.
CheckpointInfo load_checkpoint(const std::string& path, Module& model, SGD& sgd, Generator& gen);

// The metadata alone (no tensors read), e.g. to learn which model to build before loading.
CheckpointInfo read_checkpoint_info(const std::string& path);

}  // namespace hpa
