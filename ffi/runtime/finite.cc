#include "runtime/finite.h"

namespace jaxcps {

namespace {

JAXCPS_CLONED_PER_ISA
bool RowsNonFiniteCloned(const float* first, int64_t rows, int64_t stride, int64_t len) {
  uint32_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < len; ++i) bad |= NonFiniteBit(first[r * stride + i]);
  }
  return bad != 0;
}

}  // namespace

bool RowsNonFinite(const float* first, int64_t rows, int64_t stride, int64_t len) {
  return RowsNonFiniteCloned(first, rows, stride, len);
}

}  // namespace jaxcps
