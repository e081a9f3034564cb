# The freestanding library: the core, the region API (with first-class heaps
# bound to a region) and the bare-metal platform (src/platform/bare/), built
# for a kernel: no libc, no libstdc++, no exceptions, no RTTI, no stack
# protector, no thread-safe statics.
#
#   libshardalloc_freestanding.a   what a kernel links (see docs/kernel.md)
#
# Tests (labels in brackets):
#   freestanding.undefined_symbols [freestanding]  nm lists what the library
#       needs from outside; anything beyond the allow-list below fails.
#   kernel.riscv64.undefined_symbols [freestanding;kernel]  the same for the
#       riscv64 build inside the test kernel.
#   kernel.riscv64.boot [kernel]  boots kernel/riscv64 under
#       qemu-system-riscv64 -smp 4 and checks that every test passed on 4 harts.
# The kernel tests need tools/install-kernel-deps (riscv64 cross compiler,
# qemu-system-misc, opensbi); SHARDALLOC_KERNEL_TESTS=AUTO (the default) adds
# them when those are installed, ON requires them, OFF leaves them out.
#
# This file is also included by kernel/riscv64/CMakeLists.txt (another
# project, built with the cross compiler): there it only defines
# shardalloc_add_freestanding_library().
include_guard(DIRECTORY)

get_filename_component(SHARDALLOC_ROOT ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

set(SHARDALLOC_FREESTANDING_FLAGS
    -ffreestanding -fno-exceptions -fno-rtti -fno-stack-protector -fno-threadsafe-statics
    -fvisibility=hidden)
# GCC on aarch64 (Debian's default) calls libgcc's __aarch64_cas8_acq & co.
# for atomics, which pick LSE or LL/SC at run time through getauxval: inline
# them instead. A kernel built for ARMv8.1+ may add -march=armv8.1-a (LSE).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND SHARDALLOC_FREESTANDING_FLAGS -mno-outline-atomics)
endif()

# What the library may leave undefined; a kernel provides it:
#   memcpy, memset      the C library's; the core calls __builtin_memcpy /
#                       __builtin_memset, which the compiler may lower to calls
#   __clzdi2, __ctzdi2, __popcountdi2
#                       the compiler runtime (libgcc, compiler-rt builtins)
#                       on targets without bit-count instructions (riscv64gc,
#                       x86-64 baseline, aarch64 -mgeneral-regs-only)
# The list is for linking; the library is compiled, not linked, so -nostdlib
# belongs to the kernel's link (kernel/riscv64 links with -nostdlib ... -lgcc).
# Our own hooks are not here: the kernel hands them over at run time
# (shard_set_cpu_hook, shard_set_fatal_hook), so no symbol is left for it.
set(SHARDALLOC_FREESTANDING_ALLOWED memcpy memset __clzdi2 __ctzdi2 __popcountdi2)

# shardalloc_freestanding_sources(<var>): the freestanding library's sources,
# the core, the freestanding APIs (regions, first-class heaps bound to a
# region, and their statistics and snapshots into a buffer) and the bare
# platform. tests/bare builds the same list with the hosted flags.
function(shardalloc_freestanding_sources out)
  file(GLOB _core CONFIGURE_DEPENDS ${SHARDALLOC_ROOT}/src/core/*.cpp)
  file(GLOB _bare CONFIGURE_DEPENDS ${SHARDALLOC_ROOT}/src/platform/bare/*.cpp)
  set(_api region_api.cpp heap_api.cpp region_heap_api.cpp stats_api.cpp)
  list(TRANSFORM _api PREPEND ${SHARDALLOC_ROOT}/src/api/)
  set(${out} ${_core} ${_api} ${_bare} PARENT_SCOPE)
endfunction()

function(shardalloc_add_freestanding_library name)
  shardalloc_freestanding_sources(_sources)
  add_library(${name} STATIC ${_sources})
  target_include_directories(${name} PUBLIC ${SHARDALLOC_ROOT}/include PRIVATE ${SHARDALLOC_ROOT}/src)
  target_compile_features(${name} PUBLIC cxx_std_20)
  target_compile_options(${name} PRIVATE ${SHARDALLOC_FREESTANDING_FLAGS} -Wall -Wextra)
  # A kernel links it with -nostdlib plus the compiler runtime (libgcc).
  set_target_properties(${name} PROPERTIES OUTPUT_NAME shardalloc_freestanding CXX_EXTENSIONS OFF)
endfunction()

if(NOT PROJECT_NAME STREQUAL "shardalloc")
  return()
endif()

# Sanitizer builds compile every target with -fsanitize (directory-wide), which
# is not freestanding; tests/bare covers the bare platform there.
if(SHARDALLOC_SANITIZE)
  message(STATUS "freestanding library: skipped in sanitizer builds")
  return()
endif()

shardalloc_add_freestanding_library(shardalloc_freestanding)
if(SHARDALLOC_WERROR)
  target_compile_options(shardalloc_freestanding PRIVATE -Werror)
endif()

if(NOT SHARDALLOC_BUILD_TESTS)
  return()
endif()

add_test(NAME freestanding.undefined_symbols
         COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM} -DLIB=$<TARGET_FILE:shardalloc_freestanding>
                 "-DALLOWED=${SHARDALLOC_FREESTANDING_ALLOWED}" -P ${SHARDALLOC_ROOT}/cmake/check-undefined-symbols.cmake)
set_tests_properties(freestanding.undefined_symbols PROPERTIES LABELS freestanding TIMEOUT 60)

# ---- the riscv64 test kernel ----------------------------------------------------

set(SHARDALLOC_KERNEL_TESTS AUTO CACHE STRING "riscv64 bare-metal image under QEMU: AUTO, ON or OFF")
if(SHARDALLOC_KERNEL_TESTS STREQUAL "OFF" OR CMAKE_CROSSCOMPILING)
  return()
endif()

find_program(SHARDALLOC_RISCV64_CXX riscv64-linux-gnu-g++)
find_program(SHARDALLOC_RISCV64_NM riscv64-linux-gnu-nm)
find_program(SHARDALLOC_QEMU_RISCV64 qemu-system-riscv64)
find_file(SHARDALLOC_OPENSBI_FW fw_dynamic.bin
          PATHS /usr/lib/riscv64-linux-gnu/opensbi/generic /usr/share/qemu NO_DEFAULT_PATH)
if(NOT SHARDALLOC_RISCV64_CXX OR NOT SHARDALLOC_RISCV64_NM OR NOT SHARDALLOC_QEMU_RISCV64 OR NOT SHARDALLOC_OPENSBI_FW)
  if(SHARDALLOC_KERNEL_TESTS STREQUAL "ON")
    message(FATAL_ERROR "kernel tests: riscv64-linux-gnu-g++, qemu-system-riscv64 or OpenSBI missing (run tools/install-kernel-deps)")
  endif()
  message(STATUS "kernel tests: skipped (run tools/install-kernel-deps to get the riscv64 toolchain, QEMU and OpenSBI)")
  return()
endif()

include(ExternalProject)
set(_kernel_dir ${CMAKE_BINARY_DIR}/kernel-riscv64)
set(_kernel_build_cmd)
if(CMAKE_GENERATOR MATCHES "Ninja")
  set(_kernel_build_cmd BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> -j 2)  # Make passes its jobserver on
endif()
ExternalProject_Add(kernel_riscv64
  SOURCE_DIR ${SHARDALLOC_ROOT}/kernel/riscv64
  BINARY_DIR ${_kernel_dir}
  CMAKE_ARGS -DCMAKE_TOOLCHAIN_FILE=${SHARDALLOC_ROOT}/cmake/toolchains/riscv64-bare.cmake
             -DCMAKE_BUILD_TYPE=Release -DSHARDALLOC_WERROR=${SHARDALLOC_WERROR}
  ${_kernel_build_cmd}
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON
  BUILD_BYPRODUCTS ${_kernel_dir}/image.elf ${_kernel_dir}/libshardalloc_freestanding.a)

add_test(NAME kernel.riscv64.undefined_symbols
         COMMAND ${CMAKE_COMMAND} -DNM=${SHARDALLOC_RISCV64_NM} -DLIB=${_kernel_dir}/libshardalloc_freestanding.a
                 "-DALLOWED=${SHARDALLOC_FREESTANDING_ALLOWED}" -P ${SHARDALLOC_ROOT}/cmake/check-undefined-symbols.cmake)
set_tests_properties(kernel.riscv64.undefined_symbols PROPERTIES LABELS "freestanding;kernel" TIMEOUT 60)

# 4 harts on however many host cores: TCG runs each vCPU in a thread. The
# kernel prints "ALL TESTS PASSED on 4 harts" and powers off through SBI;
# anything else (a failed test, a fatal error, a trap, a hang) fails the test.
# QEMU's -nographic console needs a valid stdin (CI may run with none): /dev/null.
add_test(NAME kernel.riscv64.boot
         COMMAND sh -c "exec \"$0\" \"$@\" < /dev/null"
                 ${SHARDALLOC_QEMU_RISCV64} -machine virt -smp 4 -m 256M -nographic -no-reboot
                 -bios ${SHARDALLOC_OPENSBI_FW} -kernel ${_kernel_dir}/image.elf)
set_tests_properties(kernel.riscv64.boot PROPERTIES
  LABELS kernel TIMEOUT 120 RUN_SERIAL TRUE
  PASS_REGULAR_EXPRESSION "ALL TESTS PASSED on 4 harts"
  FAIL_REGULAR_EXPRESSION "FAIL;fatal;unexpected trap")
