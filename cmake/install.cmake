# Packaging (issue 8): `cmake --install build --prefix P` installs
#   include/shardalloc/*.h, *.hpp        the public headers
#   lib/libshardalloc.so.1               core + APIs + malloc/operator new override
#                                        (SONAME libshardalloc.so.1; the file is
#                                        libshardalloc.so.<version>, and
#                                        libshardalloc.so links to it)
#   lib/libshardalloc-checked.so.1       the same in checked mode (docs/reliability.md)
#   lib/libshardalloc_core.a             core + APIs + Linux platform, no override
#                                        (the build tree's libshardalloc_static.a)
#   lib/cmake/shardalloc/                find_package(shardalloc) ->
#                                          shardalloc::shardalloc (libshardalloc.so)
#                                          shardalloc::override   (the same, by its role)
#                                          shardalloc::core       (libshardalloc_core.a + pthread)
#   lib/pkgconfig/shardalloc.pc          -lshardalloc
#   lib/pkgconfig/shardalloc-core.pc     -lshardalloc_core -lpthread
#   bin/shardalloc-heapmap               heap snapshot -> HTML/SVG picture
#   bin/shardalloc-run                   runs a program with libshardalloc.so preloaded
# ("lib" is CMAKE_INSTALL_LIBDIR: lib/<multiarch> on Debian with prefix /usr.)
# The CMake package and the .pc files are relocatable (paths relative to
# where they are installed). Tested by tests/packaging (ctest -L packaging).
#
# Components (the Debian packages of cmake/cpack.cmake):
#   runtime  the shared libraries (with their SONAME links), shardalloc-run,
#            shardalloc-heapmap
#   devel    headers, libshardalloc.so / libshardalloc-checked.so (the
#            links a linker wants), libshardalloc_core.a, CMake package,
#            pkg-config files
#
# Included by the top-level CMakeLists.txt. Sanitizer builds have no
# libshardalloc.so and install nothing.

if(NOT TARGET shardalloc OR NOT TARGET shardalloc_static)
  message(STATUS "install: nothing to install in this build (no libshardalloc.so)")
  return()
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# ---- ABI version of the shared libraries -----------------------------------------
# SONAME libshardalloc.so.<SOVERSION>: bump SHARDALLOC_SOVERSION when the C ABI
# breaks (a function removed or changed, a struct of stats.h changed). The
# build tree keeps libshardalloc.so (a link to the SONAME file) for LD_PRELOAD.
set(SHARDALLOC_SOVERSION 1)
foreach(_sa_lib shardalloc shardalloc_checked)
  if(TARGET ${_sa_lib})
    set_target_properties(${_sa_lib} PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${SHARDALLOC_SOVERSION})
  endif()
endforeach()

# Empty: <libdir>/cmake/shardalloc, following CMAKE_INSTALL_LIBDIR (which
# GNUInstallDirs changes with the prefix: lib/<multiarch> for /usr on Debian).
set(SHARDALLOC_INSTALL_CMAKEDIR "" CACHE STRING
    "Where the CMake package of shardalloc is installed (relative to the prefix; default <libdir>/cmake/shardalloc)")
if(NOT SHARDALLOC_INSTALL_CMAKEDIR)
  set(SHARDALLOC_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardalloc)
endif()
set(SHARDALLOC_CORE_ARCHIVE_NAME libshardalloc_core.a)  # -lshardalloc_core

install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/shardalloc
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT devel
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(TARGETS shardalloc
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT devel)
if(TARGET shardalloc_checked)
  install(TARGETS shardalloc_checked
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT devel)
endif()
# install(TARGETS) cannot rename: the archive goes in as a file under its install name.
install(FILES $<TARGET_FILE:shardalloc_static>
        DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RENAME ${SHARDALLOC_CORE_ARCHIVE_NAME}
        COMPONENT devel)
if(EXISTS ${CMAKE_SOURCE_DIR}/tools/shardalloc-heapmap)
  install(PROGRAMS ${CMAKE_SOURCE_DIR}/tools/shardalloc-heapmap
          DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
endif()

# ---- shardalloc-run ------------------------------------------------------------------
# The launcher finds the libraries next to itself (the build tree: a copy
# lands next to libshardalloc.so), in the libdir it is installed with (filled
# in below: bindir -> libdir, relative, so a moved prefix still works), or in
# ../lib*, ../build.
configure_file(${CMAKE_SOURCE_DIR}/tools/shardalloc-run ${CMAKE_BINARY_DIR}/shardalloc-run COPYONLY)
file(RELATIVE_PATH SHARDALLOC_RUN_LIBDIR_FROM_BINDIR /p/${CMAKE_INSTALL_BINDIR} /p/${CMAKE_INSTALL_LIBDIR})
configure_file(${CMAKE_SOURCE_DIR}/tools/shardalloc-run ${CMAKE_BINARY_DIR}/packaging/shardalloc-run @ONLY)
install(PROGRAMS ${CMAKE_BINARY_DIR}/packaging/shardalloc-run
        DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

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
