# flashgdn_generate_kernels(KERNELS_DIR d GENERATOR g OUT_DIR o SOURCES_VAR s INCLUDE_DIRS_VAR i)
#
# Asks build_tools/generate.py (with FLASHGDN_GENERATOR_PYTHON, which must have TileLang) which
# variants each kernel module ships, then adds one custom command per module that lowers them
# to <OUT_DIR>/<module>/<symbol>.cu and <module>_kernels.h. The .cu files compile for sm_90a
# with the flags TileLang's own JIT uses.
function(flashgdn_generate_kernels)
  cmake_parse_arguments(ARG "" "KERNELS_DIR;GENERATOR;OUT_DIR;SOURCES_VAR;INCLUDE_DIRS_VAR;MANIFEST" "" ${ARGN})

  execute_process(
    COMMAND "${FLASHGDN_GENERATOR_PYTHON}" -c
      "import os, tilelang; r = os.path.dirname(tilelang.__file__); print(os.path.join(r, 'src')); print(os.path.join(r, '3rdparty', 'cutlass', 'include'))"
    OUTPUT_VARIABLE _tl_dirs OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "flashgdn: TileLang is needed at build time, but '${FLASHGDN_GENERATOR_PYTHON}' "
                        "cannot import it:\n${_err}\nInstall tilelang or set FLASHGDN_GENERATOR_PYTHON.")
  endif()
  string(REPLACE "\n" ";" _tl_dirs "${_tl_dirs}")
  list(GET _tl_dirs 0 _tl_templates)
  list(GET _tl_dirs 1 _tl_cutlass)

  execute_process(
    COMMAND "${FLASHGDN_GENERATOR_PYTHON}" "${ARG_GENERATOR}" --kernels-dir "${ARG_KERNELS_DIR}" --list
    OUTPUT_VARIABLE _listing OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "flashgdn: listing kernel variants failed:\n${_err}")
  endif()
  string(REPLACE "\n" ";" _listing "${_listing}")

  set(_modules "")
  set(_all_sources "")
  set(_manifest "# kernel module, variant symbol (its __global__ function is <symbol>_kernel)\n")
  set(_include_dirs "")
  foreach(_line IN LISTS _listing)
    string(REPLACE " " ";" _fields "${_line}")
    list(GET _fields 0 _module)
    list(GET _fields 1 _symbol)
    list(GET _fields 2 _fast_math)
    set(_cu "${ARG_OUT_DIR}/${_module}/${_symbol}.cu")
    list(APPEND _outputs_${_module} "${_cu}")
    list(APPEND _all_sources "${_cu}")
    string(APPEND _manifest "${_module} ${_symbol}\n")
    set(_opts -w -Xcudafe --diag_suppress=177 -lineinfo --generate-code=arch=compute_90a,code=sm_90a)
    if(_fast_math)
      list(APPEND _opts --use_fast_math)
    endif()
    set_source_files_properties("${_cu}" PROPERTIES GENERATED TRUE COMPILE_OPTIONS "${_opts}")
    if(NOT _module IN_LIST _modules)
      list(APPEND _modules "${_module}")
    endif()
  endforeach()

  file(GLOB _common_inputs "${ARG_KERNELS_DIR}/common.py")
  foreach(_module IN LISTS _modules)
    set(_header "${ARG_OUT_DIR}/${_module}/${_module}_kernels.h")
    add_custom_command(
      OUTPUT ${_outputs_${_module}} "${_header}"
      COMMAND "${FLASHGDN_GENERATOR_PYTHON}" "${ARG_GENERATOR}" --kernels-dir "${ARG_KERNELS_DIR}"
              --out-dir "${ARG_OUT_DIR}" --module ${_module}
      DEPENDS "${ARG_KERNELS_DIR}/${_module}.py" ${_common_inputs} "${ARG_GENERATOR}"
      COMMENT "TileLang: lowering kernels_tl/${_module}.py for sm_90a"
      VERBATIM)
    list(APPEND _all_sources "${_header}")
    list(APPEND _include_dirs "${ARG_OUT_DIR}/${_module}")
  endforeach()

  # Generated TUs include TileLang's device templates and CUTLASS headers (build time only).
  set_property(SOURCE ${_all_sources} APPEND PROPERTY INCLUDE_DIRECTORIES "${_tl_templates};${_tl_cutlass}")
  if(ARG_MANIFEST)
    file(WRITE "${ARG_MANIFEST}" "${_manifest}")
  endif()
  set(${ARG_SOURCES_VAR} ${_all_sources} PARENT_SCOPE)
  set(${ARG_INCLUDE_DIRS_VAR} ${_include_dirs} PARENT_SCOPE)
endfunction()
