# Hosted Linux on riscv64 with Debian's cross compiler; tests run under qemu-user
# (tools/cross-test). Libraries built for the target (GoogleTest) are found
# through CMAKE_PREFIX_PATH.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR riscv64)
set(CMAKE_C_COMPILER riscv64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER riscv64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/riscv64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# ctest (and gtest_discover_tests) run the test programs through qemu-user.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-riscv64 -L /usr/riscv64-linux-gnu)
# GCC 12 has no inline 1- and 2-byte atomic read-modify-writes on riscv64
# (std::atomic<bool>::compare_exchange, std::barrier): they are libatomic calls.
set(CMAKE_C_STANDARD_LIBRARIES "-latomic" CACHE STRING "")
set(CMAKE_CXX_STANDARD_LIBRARIES "-latomic" CACHE STRING "")
