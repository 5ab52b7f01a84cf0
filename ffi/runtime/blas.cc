// OpenBLAS calls (see blas.h).
#include "runtime/blas.h"

#include <initializer_list>
#include <limits>

#include "cblas.h"

namespace jaxcps {

void Sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc, float beta) {
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
}

std::string CheckBlasSizes(std::initializer_list<BlasSize> sizes, const char* algorithm) {
  for (const BlasSize& size : sizes) {
    if (size.value > std::numeric_limits<blasint>::max()) {
      return std::string(algorithm) + ": " + size.name + " = " + std::to_string(size.value) +
             " exceeds " + std::to_string(std::numeric_limits<blasint>::max()) +
             ", the largest GEMM dimension of the 32-bit BLAS interface";
    }
  }
  return {};
}

void SetBlasSingleThreaded() { scipy_openblas_set_num_threads(1); }

}  // namespace jaxcps
