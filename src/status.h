// Error reporting shared by the C API implementation: a thread-local message plus the status.
#pragma once

#include <cstdarg>
#include <string>

#include "flashgdn/flashgdn.h"

namespace flashgdn {

// Records the message for fgdn_last_error() and returns `status`.
fgdn_status fail(fgdn_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Clears the message; returns FGDN_SUCCESS.
fgdn_status ok();

}  // namespace flashgdn

#define FGDN_REQUIRE(cond, ...)                                      \
  do {                                                               \
    if (!(cond)) return ::flashgdn::fail(FGDN_ERROR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

#define FGDN_TRY(expr)                          \
  do {                                          \
    fgdn_status _fgdn_st = (expr);              \
    if (_fgdn_st != FGDN_SUCCESS) return _fgdn_st; \
  } while (0)
