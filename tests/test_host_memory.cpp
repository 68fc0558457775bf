// The loader's batch memory: pinned when a GPU is present, aligned host memory otherwise;
// either way usable for a whole batch and released without leaks.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "tests/gpu_util.h"
#include "train/host_memory.h"

TEST(BatchHostMemory, AllocatesWritableAlignedBuffers) {
  const auto alloc = hpa::batch_host_allocator();
  ASSERT_TRUE(alloc.allocate && alloc.release);
  const size_t bytes = size_t{32} * 4 * 64 * 64;
  void* p = alloc.allocate(bytes);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  std::memset(p, 0x5A, bytes);
  EXPECT_EQ(static_cast<unsigned char*>(p)[bytes - 1], 0x5A);
  alloc.release(p, bytes);
  EXPECT_EQ(hpa::batch_memory_is_pinned(), hpa::test::gpu_available());
}
