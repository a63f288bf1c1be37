// Thread-local error message behind fgdn_last_error(), device checks, build info.
#include "status.h"

#include <cstdio>
#include <mutex>

#include <cuda_runtime.h>

namespace flashgdn {
namespace {
thread_local std::string g_last_error;
}

fgdn_status fail(fgdn_status status, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  g_last_error = buf;
  return status;
}

fgdn_status ok() {
  g_last_error.clear();
  return FGDN_SUCCESS;
}

}  // namespace flashgdn

extern "C" const char* fgdn_last_error(void) { return flashgdn::g_last_error.c_str(); }

extern "C" const char* fgdn_build_info(void) {
  static const std::string info = std::to_string(FLASHGDN_VERSION_MAJOR) + "." +
                                  std::to_string(FLASHGDN_VERSION_MINOR) + "." +
                                  std::to_string(FLASHGDN_VERSION_PATCH) + " (sm_90a, CUDA " +
                                  std::to_string(CUDART_VERSION / 1000) + "." +
                                  std::to_string((CUDART_VERSION % 1000) / 10) + ")";
  return info.c_str();
}

extern "C" fgdn_status fgdn_check_device(int device) {
  using flashgdn::fail;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorInsufficientDriver) {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0) {
      return fail(FGDN_ERROR_UNSUPPORTED_DEVICE,
                  "no NVIDIA driver found (libcuda.so.1 could not be loaded): flashgdn needs an sm_90 GPU "
                  "and its driver");
    }
    return fail(FGDN_ERROR_UNSUPPORTED_DEVICE,
                "the NVIDIA driver supports CUDA %d.%d, but flashgdn was built with CUDA %d.%d: "
                "update the driver (CUDA 13 needs >= 580) or build flashgdn with an older CUDA",
                driver / 1000, (driver % 1000) / 10, CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
  }
  if (err != cudaSuccess || count == 0) {
    return fail(FGDN_ERROR_UNSUPPORTED_DEVICE, "no CUDA device is available (%s)",
                err == cudaSuccess ? "device count is 0" : cudaGetErrorString(err));
  }
  if (device < 0 || device >= count) {
    return fail(FGDN_ERROR_UNSUPPORTED_DEVICE, "device %d does not exist (%d CUDA devices)", device, count);
  }
  // The answer cannot change while the process runs: cache it per device.
  static std::mutex mu;
  static int capability[64] = {0};
  int cc = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (device < 64 && capability[device]) {
      cc = capability[device];
    } else {
      int major = 0, minor = 0;
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
      cc = major * 10 + minor;
      if (device < 64) capability[device] = cc;
    }
  }
  if (cc != 90) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, device);
    return fail(FGDN_ERROR_UNSUPPORTED_DEVICE,
                "flashgdn's kernels are compiled for sm_90a (Hopper: H100/H200/H20); device %d is %s "
                "(sm_%d)", device, prop.name, cc);
  }
  return flashgdn::ok();
}
