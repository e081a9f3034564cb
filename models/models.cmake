# CTest test of the Promela models (models/check.sh; docs/reliability.md).
# Included from cmake/fuzz.cmake (the top-level CMakeLists.txt includes that
# file; models/ has no CMakeLists.txt of its own).
#
#   model.protocols   label `model`: spin, exhaustive search of every model
#                     configuration, plus the mutants (~1.5 min, ~1.2 GB)
#
# Registered only in builds without a sanitizer: it does not depend on the
# build, so one build of tools/run-tests (Release) runs it.
if(SHARDALLOC_SANITIZE OR NOT SHARDALLOC_BUILD_TESTS)
  return()
endif()
enable_testing()
add_test(NAME model.protocols COMMAND bash ${CMAKE_SOURCE_DIR}/models/check.sh)
set_tests_properties(model.protocols PROPERTIES LABELS model TIMEOUT 2400)
