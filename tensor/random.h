// Generator: the engine's one source of randomness, a Philox4x32-10 stream identified by
// (seed, offset). Each draw (one rand tensor, one dropout mask) takes the current offset
// and advances it by one; element i of the draw is philox(i, offset, seed). Saving and
// restoring (seed, offset) therefore resumes the exact same sequence, on CPU or CUDA.
#pragma once

#include <cstdint>

namespace hpa {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves one draw and returns its offset.
  uint64_t next_offset() { return offset_++; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide default generator (seed 0 until manual_seed).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace hpa
