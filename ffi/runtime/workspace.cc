// The workspace size limit and the block cache (see workspace.h).
#include "runtime/workspace.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace jaxcps {

namespace {

uint64_t DefaultLimit() {
  uint64_t limit = uint64_t{64} << 30;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    limit = std::min(limit,
                     CheckedBytes(static_cast<uint64_t>(pages), static_cast<uint64_t>(page_size)));
  }
  return limit;
}

// JAXCPS_MAX_WORKSPACE_BYTES as a positive integer; anything else keeps the default.
uint64_t ReadLimit() {
  const char* env = std::getenv("JAXCPS_MAX_WORKSPACE_BYTES");
  if (env == nullptr || *env == '\0') return DefaultLimit();
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(env, &end, 10);
  if (errno != 0 || *end != '\0' || value == 0 || env[0] == '-') return DefaultLimit();
  return value;
}

}  // namespace

uint64_t MaxWorkspaceBytes() {
  static const uint64_t limit = ReadLimit();
  return limit;
}

namespace {

struct Block {
  void* data;
  uint64_t capacity;
};

struct BlockCache {
  std::mutex mu;
  std::vector<Block> blocks;
  uint64_t bytes = 0;
};

BlockCache& Cache() {
  static BlockCache* cache = new BlockCache;  // never destroyed: workspaces may outlive statics
  return *cache;
}

}  // namespace

uint64_t MaxCachedBytes() {
  static const uint64_t cap = std::min<uint64_t>(uint64_t{1} << 29, DefaultLimit() / 16);
  return cap;
}

void* AcquireBlock(uint64_t bytes, uint64_t* capacity) {
  if (bytes >= kMinCachedBytes) {
    BlockCache& cache = Cache();
    std::lock_guard<std::mutex> lock(cache.mu);
    // The smallest cached block that fits without wasting more than half of it.
    auto best = cache.blocks.end();
    for (auto it = cache.blocks.begin(); it != cache.blocks.end(); ++it) {
      if (it->capacity >= bytes && it->capacity / 2 <= bytes &&
          (best == cache.blocks.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != cache.blocks.end()) {
      const Block block = *best;
      cache.blocks.erase(best);
      cache.bytes -= block.capacity;
      *capacity = block.capacity;
      return block.data;
    }
  }
  const uint64_t rounded = (bytes + 63) / 64 * 64;
  void* data = std::aligned_alloc(64, rounded);
  *capacity = data == nullptr ? 0 : rounded;
  return data;
}

void ReleaseBlock(void* block, uint64_t capacity) {
  if (capacity >= kMinCachedBytes && capacity <= MaxCachedBytes()) {
    BlockCache& cache = Cache();
    std::lock_guard<std::mutex> lock(cache.mu);
    // Make room by dropping the oldest blocks; the newest is the likeliest to be asked again.
    while (!cache.blocks.empty() && cache.bytes + capacity > MaxCachedBytes()) {
      std::free(cache.blocks.front().data);
      cache.bytes -= cache.blocks.front().capacity;
      cache.blocks.erase(cache.blocks.begin());
    }
    cache.blocks.push_back({block, capacity});
    cache.bytes += capacity;
    return;
  }
  std::free(block);
}

uint64_t CachedBytes() {
  BlockCache& cache = Cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.bytes;
}

}  // namespace jaxcps
