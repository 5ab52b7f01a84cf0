// Times the C++ kernels directly, without JAX: one 3x3 stride-1 SAME convolution of an NHWC
// activation read from a file, per kernel the fastest and the median of `repeats` calls in
// CPU time of the calling thread (robust on a shared machine), its useful GFLOP/s
// (2 * non-zeros * 9 * O per second) and its error against the reference kernel.
// Built and run by tools/kernel_bench.sh; for kernel development, not the benchmark of record
// (that is `jaxcps bench`).
//
//   kernel_bench X.bin W.bin H C O KERNELS [repeats]    X: float32 (1,H,H,C), W: (3,3,C,O)
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/kernel.h"
#include "runtime/blas.h"

namespace {

std::vector<float> Load(const char* path, size_t count) {
  std::vector<float> values(count);
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr || std::fread(values.data(), sizeof(float), count, f) != count) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
    std::exit(2);
  }
  std::fclose(f);
  return values;
}

double ThreadSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s X.bin W.bin H C O KERNEL[,KERNEL...] [repeats]\n", argv[0]);
    return 2;
  }
  const int64_t h = std::atoll(argv[3]), c = std::atoll(argv[4]), o = std::atoll(argv[5]);
  const int repeats = argc > 7 ? std::atoi(argv[7]) : 9;
  const std::vector<float> x = Load(argv[1], h * h * c), w = Load(argv[2], 9 * c * o);
  jaxcps::SetBlasSingleThreaded();

  jaxcps::ConvGeometry g;
  g.n = 1, g.h = h, g.w = h, g.c = c, g.kh = 3, g.kw = 3, g.ci = c, g.o = o;
  g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
  const std::string invalid = g.Derive();
  if (!invalid.empty()) {
    std::fprintf(stderr, "%s\n", invalid.c_str());
    return 2;
  }
  jaxcps::SerialParallel serial;
  std::vector<float> expected(g.oh * g.ow * o), y(expected.size());
  jaxcps::kReference.run(g, x.data(), w.data(), expected.data(), serial);
  double scale = 0;
  for (float v : expected) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  const double nonzeros =
      static_cast<double>(std::count_if(x.begin(), x.end(), [](float v) { return v != 0.0f; }));

  std::string names = argv[6];
  for (size_t begin = 0; begin <= names.size();) {
    const size_t end = std::min(names.find(',', begin), names.size());
    const std::string name = names.substr(begin, end - begin);
    begin = end + 1;
    const jaxcps::Kernel* kernel = jaxcps::FindKernel(name);
    if (kernel == nullptr) {
      std::fprintf(stderr, "unknown kernel %s\n", name.c_str());
      return 2;
    }
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
      const double start = ThreadSeconds();
      const std::string err = kernel->run(g, x.data(), w.data(), y.data(), serial);
      seconds.push_back(ThreadSeconds() - start);
      if (!err.empty()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), err.c_str());
        return 1;
      }
    }
    std::sort(seconds.begin(), seconds.end());
    double error = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      error = std::max(error, static_cast<double>(std::fabs(y[i] - expected[i])));
    }
    std::printf("%-9s fastest %8.3f ms  median %8.3f ms  useful %6.1f GFLOP/s  error %.1e\n",
                name.c_str(), 1e3 * seconds.front(), 1e3 * seconds[seconds.size() / 2],
                2.0 * nonzeros * 9 * static_cast<double>(o) / seconds.front() / 1e9,
                error / std::max(scale, 1e-30));
  }
  return 0;
}
