# Debian packages (issue 16): after a build,
#
#   cd build && cpack -G DEB
#
# makes two packages from the install components of cmake/install.cmake:
#
#   shardalloc_<version>_<arch>.deb          runtime: libshardalloc.so.1 and
#       libshardalloc-checked.so.1 (SONAME links to the versioned files),
#       /usr/bin/shardalloc-run, /usr/bin/shardalloc-heapmap. Depends are
#       computed by dpkg-shlibdeps (libc6, libstdc++6, libgcc-s1); a shlibs
#       file ("libshardalloc 1 shardalloc (>= <version>)") lets packages
#       linked with it depend on it; postinst and postrm run ldconfig.
#   libshardalloc-dev_<version>_<arch>.deb   headers, libshardalloc.so and
#       libshardalloc-checked.so (links for the linker), libshardalloc_core.a,
#       the CMake package and the pkg-config files; depends on
#       shardalloc (= <version>).
#
# Configure with -DCMAKE_INSTALL_PREFIX=/usr for Debian's multiarch libdir
# (lib/x86_64-linux-gnu, GNUInstallDirs); with the default prefix the
# packages use /usr/lib, which works as well. The runtime package holds the
# tools too (so it is named shardalloc, not libshardalloc1). Needs dpkg-dev
# (dpkg-shlibdeps) and file (tools/install-deps). Tested by ctest
# packaging.deb (tests/packaging/deb_test.sh).
#
# Included at the end of the top-level CMakeLists.txt.

if(NOT TARGET shardalloc OR SHARDALLOC_SANITIZE)
  return()
endif()

set(CPACK_PACKAGE_NAME shardalloc)
set(CPACK_PACKAGE_VENDOR shardalloc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
if(NOT CPACK_PACKAGE_CONTACT)
  set(CPACK_PACKAGE_CONTACT "shardalloc developers <shardalloc@localhost>")
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime devel)
set(CPACK_COMPONENT_DEVEL_DEPENDS runtime)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)  # devel: Depends: shardalloc (= version)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)          # <name>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME shardalloc)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SUGGESTS "python3")  # shardalloc-heapmap
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# The first line is the synopsis; CPack indents the rest (blank line: " .",
# a leading space: verbatim). No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack
# would put it in front of both.
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
"lock-free multi-thread memory allocator: malloc replacement
shardalloc is mimalloc's algorithm (free-list sharding) with lock-free
multi-thread support. libshardalloc.so replaces malloc, free, operator new
and the rest of the family, by LD_PRELOAD or by linking:

  shardalloc-run [--checked] [--stats] program args...

libshardalloc-checked.so is the checked build (every double free,
overflows, writes to freed blocks). shardalloc-heapmap renders heap
snapshots (SHARDALLOC_SNAPSHOT) as HTML.")

set(CPACK_DEBIAN_DEVEL_PACKAGE_NAME libshardalloc-dev)
set(CPACK_DEBIAN_DEVEL_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVEL_DESCRIPTION
"lock-free multi-thread memory allocator: development files
Headers (shard_malloc, first-class heaps, the region allocator for
kernels, statistics), libshardalloc_core.a (the same without the malloc
override), find_package(shardalloc) and pkg-config files (shardalloc,
shardalloc-core).")

include(CPack)
