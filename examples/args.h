// The command line the training examples share: [output-dir] [--device cpu|cuda|cuda:N].
#pragma once

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace examples {

struct Args {
  std::filesystem::path out_dir = "zkynet-graphs";
  zkynet::Device device = zkynet::Device::cpu();
};

// 0 when `args` holds the parsed line; else the exit status, after a message on stderr naming
// `program` (2: a bad --device; 1: a CUDA device asked for and none answers).
inline int parse_args(const char* program, int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") != 0) {
      args.out_dir = argv[i];
      continue;
    }
    try {
      if (i + 1 >= argc) throw zkynet::UsageError("needs a value (cpu, cuda or cuda:N)");
      args.device = zkynet::Device::parse(argv[++i]);
    } catch (const zkynet::Error& e) {
      std::fprintf(stderr, "%s: --device: %s\nusage: %s [output-dir] [--device cpu|cuda|cuda:N]\n", program, e.what(),
                   program);
      return 2;
    }
  }
  if (args.device.is_cuda() && !zkynet::cuda::is_available()) {
    std::fprintf(stderr, "%s: --device %s, but no CUDA device answers on this machine\n", program,
                 args.device.str().c_str());
    return 1;
  }
  return 0;
}

}  // namespace examples
