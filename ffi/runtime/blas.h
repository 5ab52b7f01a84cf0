// The one place that calls BLAS: single-precision GEMM from OpenBLAS (scipy-openblas32 wheel).
// Parallelism comes from XLA's pool, so OpenBLAS itself runs single-threaded (bindings/module.cc).
#ifndef JAXCPS_RUNTIME_BLAS_H_
#define JAXCPS_RUNTIME_BLAS_H_

#include <cstdint>
#include <initializer_list>
#include <string>

namespace jaxcps {

// C[m x n] = A[m x k] * B[k x n] + beta * C, row-major with leading dimensions lda, ldb, ldc.
void Sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc, float beta = 0.0f);

// A GEMM dimension and what it is, in the convolution's terms (for the error message).
struct BlasSize {
  const char* name;
  int64_t value;
};

// Checks that every size handed to Sgemm fits BLAS's 32-bit integers. "" or the reason.
std::string CheckBlasSizes(std::initializer_list<BlasSize> sizes, const char* algorithm);

void SetBlasSingleThreaded();

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_BLAS_H_
