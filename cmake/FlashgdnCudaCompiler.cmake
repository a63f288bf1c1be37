# Pick the CUDA compiler before project() enables the CUDA language.
#
# Order: an explicit CMAKE_CUDA_COMPILER or $CUDACXX (a system CUDA >= 12.8, e.g. for fleets
# whose driver predates CUDA 13) wins; otherwise the nvcc of the nvidia-cuda-nvcc wheel that
# the build's Python environment has (pyproject.toml lists it as a build requirement).
if(CMAKE_CUDA_COMPILER OR DEFINED ENV{CUDACXX})
  return()
endif()

set(_fgdn_python "${Python_EXECUTABLE}")
if(NOT _fgdn_python)
  set(_fgdn_python "${Python3_EXECUTABLE}")
endif()
if(NOT _fgdn_python)
  find_program(_fgdn_python NAMES python3 python REQUIRED)
endif()

execute_process(
  COMMAND "${_fgdn_python}" -c
    "import os, nvidia\nfor p in nvidia.__path__:\n    c = os.path.join(p, 'cu13', 'bin', 'nvcc')\n    if os.path.exists(c):\n        print(c); break"
  OUTPUT_VARIABLE _fgdn_nvcc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)

if(_fgdn_nvcc)
  message(STATUS "flashgdn: using the nvcc wheel at ${_fgdn_nvcc}")
  set(CMAKE_CUDA_COMPILER "${_fgdn_nvcc}" CACHE FILEPATH "CUDA compiler" FORCE)
  get_filename_component(_fgdn_cuda_root "${_fgdn_nvcc}" DIRECTORY)
  get_filename_component(_fgdn_cuda_root "${_fgdn_cuda_root}" DIRECTORY)
  set(CUDAToolkit_ROOT "${_fgdn_cuda_root}" CACHE PATH "CUDA toolkit root" FORCE)
  # The wheel keeps its libraries in <root>/lib, where nvcc.profile expects lib64: say so, or
  # linking (CMake's compiler check included) cannot find cudart_static.
  set(CMAKE_CUDA_FLAGS_INIT "-L${_fgdn_cuda_root}/lib")
else()
  message(STATUS "flashgdn: no nvcc wheel in ${_fgdn_python}'s environment; CMake will look for a system nvcc")
endif()
