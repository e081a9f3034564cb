# The libFuzzer target (fuzz/shardalloc_fuzz.cpp) and its CTest test.
# Included by the top-level CMakeLists.txt. See docs/reliability.md.
#
# Built only with clang (libFuzzer is part of clang's compiler-rt; on Debian,
# package libclang-rt-14-dev), and only when the build is not a TSan or MSan
# build (libFuzzer runs here with ASan). In the ASan+UBSan build of
# tools/run-tests (clang) it is built and tested with the rest:
#   shardalloc_fuzz                the fuzzer, linked against shardalloc_static
#   test fuzz.shardalloc           runs it for SHARDALLOC_FUZZ_SECONDS (default 60)
#                                  from fuzz/corpus/, label `fuzz`
#   shardalloc_fuzz_checked        the same fuzzer over the checked library
#                                  (shardalloc_static_checked; docs/reliability.md)
#   test fuzz.shardalloc_checked   runs it for SHARDALLOC_FUZZ_CHECKED_SECONDS (default 30)
#
# Options:
#   SHARDALLOC_FUZZ=OFF            do not build the fuzzer
#   SHARDALLOC_FUZZ_SECONDS=N      length of the CTest run
#   SHARDALLOC_FUZZ_COVERAGE=ON    also instrument shardalloc_static with
#                                  -fsanitize=fuzzer-no-link, so libFuzzer sees the
#                                  allocator's own branches (better fuzzing, slower).
#                                  It changes shardalloc_static for every test of the
#                                  build directory: use a build directory of its own
#                                  (docs/reliability.md, "Fuzzing for hours").

# The Promela models' CTest test lives with them (models/models.cmake).
if(EXISTS ${CMAKE_SOURCE_DIR}/models/models.cmake)
  include(${CMAKE_SOURCE_DIR}/models/models.cmake)
endif()

option(SHARDALLOC_FUZZ "Build the libFuzzer target (clang only)" ON)
set(SHARDALLOC_FUZZ_SECONDS "60" CACHE STRING "Seconds the fuzz.shardalloc CTest test runs the fuzzer")
set(SHARDALLOC_FUZZ_CHECKED_SECONDS "30" CACHE STRING "Seconds the fuzz.shardalloc_checked CTest test runs the fuzzer")
option(SHARDALLOC_FUZZ_COVERAGE "Instrument shardalloc_static for libFuzzer coverage (a build dir of its own)" OFF)

if(NOT SHARDALLOC_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(STATUS "fuzz: skipped (libFuzzer needs clang; CMAKE_CXX_COMPILER_ID is ${CMAKE_CXX_COMPILER_ID})")
  return()
endif()
if(SHARDALLOC_SANITIZE MATCHES "thread|memory")
  message(STATUS "fuzz: skipped (libFuzzer runs with ASan; this build uses -fsanitize=${SHARDALLOC_SANITIZE})")
  return()
endif()

include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address")
check_cxx_source_compiles([=[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
]=] SHARDALLOC_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT SHARDALLOC_HAVE_LIBFUZZER)
  message(WARNING "fuzz: clang cannot link -fsanitize=fuzzer here; install libclang-rt-dev (Debian) to build the fuzzer")
  return()
endif()

set(_fuzz_sanitizers fuzzer)
if(NOT SHARDALLOC_SANITIZE MATCHES "address")
  list(APPEND _fuzz_sanitizers address)
endif()
list(JOIN _fuzz_sanitizers "," _fuzz_sanitize)

if(SHARDALLOC_FUZZ_COVERAGE)
  # On the objects shardalloc_static is made of (libshardalloc.so shares
  # them: it is not built in sanitizer builds, and without one it would need
  # the coverage hooks too).
  foreach(_layer core api linux)
    target_compile_options(shardalloc_${_layer}_objects PRIVATE -fsanitize=fuzzer-no-link)
  endforeach()
  if(NOT SHARDALLOC_SANITIZE MATCHES "address")
    # The coverage hooks are defined (weakly) by the sanitizer runtimes: every
    # program linking shardalloc_static then needs one.
    message(WARNING "fuzz: SHARDALLOC_FUZZ_COVERAGE without SHARDALLOC_SANITIZE=address: only the fuzzer will link")
  endif()
endif()

find_package(Threads REQUIRED)
add_executable(shardalloc_fuzz ${CMAKE_SOURCE_DIR}/fuzz/shardalloc_fuzz.cpp)
target_link_libraries(shardalloc_fuzz PRIVATE shardalloc_static Threads::Threads)
target_compile_options(shardalloc_fuzz PRIVATE ${SHARDALLOC_WARNINGS} -g -fno-omit-frame-pointer -fsanitize=${_fuzz_sanitize})
target_link_options(shardalloc_fuzz PRIVATE -fsanitize=${_fuzz_sanitize})

enable_testing()
# fuzz/run-fuzz.sh makes the directories and runs the fuzzer. libFuzzer writes
# new inputs into the first corpus directory: a build-tree one, so fuzz/corpus/
# (the committed seeds) is only read.
add_test(NAME fuzz.shardalloc
  COMMAND bash ${CMAKE_SOURCE_DIR}/fuzz/run-fuzz.sh $<TARGET_FILE:shardalloc_fuzz> ${SHARDALLOC_FUZZ_SECONDS}
          ${CMAKE_BINARY_DIR}/fuzz-corpus ${CMAKE_BINARY_DIR}/fuzz-artifacts ${CMAKE_SOURCE_DIR}/fuzz/corpus)
math(EXPR _fuzz_timeout "${SHARDALLOC_FUZZ_SECONDS} * 2 + 120")
set_tests_properties(fuzz.shardalloc PROPERTIES LABELS fuzz TIMEOUT ${_fuzz_timeout})

# The same fuzzer over checked mode: its canaries and encoded links must stay
# silent under every valid sequence (and the shadow model's checks hold).
if(TARGET shardalloc_static_checked)
  add_executable(shardalloc_fuzz_checked ${CMAKE_SOURCE_DIR}/fuzz/shardalloc_fuzz.cpp)
  target_link_libraries(shardalloc_fuzz_checked PRIVATE shardalloc_static_checked Threads::Threads)
  target_compile_options(shardalloc_fuzz_checked PRIVATE ${SHARDALLOC_WARNINGS} -g -fno-omit-frame-pointer -fsanitize=${_fuzz_sanitize})
  target_link_options(shardalloc_fuzz_checked PRIVATE -fsanitize=${_fuzz_sanitize})
  add_test(NAME fuzz.shardalloc_checked
    COMMAND bash ${CMAKE_SOURCE_DIR}/fuzz/run-fuzz.sh $<TARGET_FILE:shardalloc_fuzz_checked> ${SHARDALLOC_FUZZ_CHECKED_SECONDS}
            ${CMAKE_BINARY_DIR}/fuzz-corpus-checked ${CMAKE_BINARY_DIR}/fuzz-artifacts-checked ${CMAKE_SOURCE_DIR}/fuzz/corpus)
  math(EXPR _fuzz_checked_timeout "${SHARDALLOC_FUZZ_CHECKED_SECONDS} * 2 + 120")
  set_tests_properties(fuzz.shardalloc_checked PROPERTIES LABELS fuzz TIMEOUT ${_fuzz_checked_timeout})
endif()
