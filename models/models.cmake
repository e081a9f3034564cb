# CTest test of the Promela models (models/check.sh; docs/reliability.md).
# Included from cmake/fuzz.cmake (the top-level CMakeLists.txt includes that
# file; models/ has no CMakeLists.txt of its own).
#
#   model.protocols.*   label `model`: spin, exhaustive search of every model
#                       configuration, plus the mutants (~5 min of CPU, ~1.5 GB
#                       per part), in parts that ctest -j runs side by side:
#     .abandon_3allocs  the longest search (~100 s alone)
#     .passes           every other configuration
#     .mutants          the mutants, each must be caught
#
# Registered only in builds without a sanitizer: it does not depend on the
# build, so one build of tools/run-tests (Release) runs it.
if(SHARDALLOC_SANITIZE OR NOT SHARDALLOC_BUILD_TESTS)
  return()
endif()
enable_testing()
set(_model_check bash ${CMAKE_SOURCE_DIR}/models/check.sh)
add_test(NAME model.protocols.abandon_3allocs COMMAND ${_model_check} --only abandon-3allocs-nosweep)
add_test(NAME model.protocols.passes COMMAND ${_model_check} --no-mutants --skip abandon-3allocs-nosweep)
add_test(NAME model.protocols.mutants COMMAND ${_model_check} --mutants-only)
# COST: a fresh build directory has no timings, and these start first.
set_tests_properties(model.protocols.abandon_3allocs model.protocols.passes model.protocols.mutants
                     PROPERTIES LABELS model TIMEOUT 2400 COST 1000)
