# Packaging (issue 8): `cmake --install build --prefix P` installs
#   include/shardalloc/*.h, *.hpp        the public headers
#   lib/libshardalloc.so                 core + APIs + malloc/operator new override
#   lib/libshardalloc_core.a             core + APIs + Linux platform, no override
#                                        (the build tree's libshardalloc_static.a)
#   lib/cmake/shardalloc/                find_package(shardalloc) ->
#                                          shardalloc::shardalloc (libshardalloc.so)
#                                          shardalloc::override   (the same, by its role)
#                                          shardalloc::core       (libshardalloc_core.a + pthread)
#   lib/pkgconfig/shardalloc.pc          -lshardalloc
#   lib/pkgconfig/shardalloc-core.pc     -lshardalloc_core -lpthread
#   bin/shardalloc-heapmap               heap snapshot -> HTML/SVG picture
# The CMake package and the .pc files are relocatable (paths relative to
# where they are installed). Tested by tests/packaging (ctest -L packaging).
#
# Included by the top-level CMakeLists.txt. Sanitizer builds have no
# libshardalloc.so and install nothing.

if(NOT TARGET shardalloc OR NOT TARGET shardalloc_static)
  message(STATUS "install: nothing to install in this build (no libshardalloc.so)")
  return()
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SHARDALLOC_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardalloc CACHE STRING
    "Where the CMake package of shardalloc is installed (relative to the prefix)")
set(SHARDALLOC_CORE_ARCHIVE_NAME libshardalloc_core.a)  # -lshardalloc_core

install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/shardalloc
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT devel
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(TARGETS shardalloc
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime)
# install(TARGETS) cannot rename: the archive goes in as a file under its install name.
install(FILES $<TARGET_FILE:shardalloc_static>
        DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RENAME ${SHARDALLOC_CORE_ARCHIVE_NAME}
        COMPONENT devel)
if(EXISTS ${CMAKE_SOURCE_DIR}/tools/shardalloc-heapmap)
  install(PROGRAMS ${CMAKE_SOURCE_DIR}/tools/shardalloc-heapmap
          DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

# ---- CMake package -----------------------------------------------------------
set(_sa_pkg_dir ${CMAKE_BINARY_DIR}/packaging)
configure_package_config_file(
  ${CMAKE_SOURCE_DIR}/cmake/shardalloc-config.cmake.in
  ${_sa_pkg_dir}/shardalloc-config.cmake
  INSTALL_DESTINATION ${SHARDALLOC_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(
  ${_sa_pkg_dir}/shardalloc-config-version.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)  # 0.x: minor versions may break
install(FILES ${_sa_pkg_dir}/shardalloc-config.cmake ${_sa_pkg_dir}/shardalloc-config-version.cmake
        DESTINATION ${SHARDALLOC_INSTALL_CMAKEDIR}
        COMPONENT devel)

# ---- pkg-config ----------------------------------------------------------------
# prefix is computed from the .pc file's own directory (${pcfiledir}), so an
# installed tree can be moved.
file(RELATIVE_PATH SHARDALLOC_PC_PREFIX_FROM_PCDIR
     /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" SHARDALLOC_PC_PREFIX_FROM_PCDIR "${SHARDALLOC_PC_PREFIX_FROM_PCDIR}")
configure_file(${CMAKE_SOURCE_DIR}/shardalloc.pc.in ${_sa_pkg_dir}/shardalloc.pc @ONLY)
configure_file(${CMAKE_SOURCE_DIR}/cmake/shardalloc-core.pc.in ${_sa_pkg_dir}/shardalloc-core.pc @ONLY)
install(FILES ${_sa_pkg_dir}/shardalloc.pc ${_sa_pkg_dir}/shardalloc-core.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT devel)
