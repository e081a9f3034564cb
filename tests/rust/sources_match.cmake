# cmake -DROOT=<source dir> -DCMAKE_LISTS=<build>/rust/cmake-library-sources.txt -P sources_match.cmake
#
# Fails when cmake/library-sources.txt (what bindings/rust/build.rs compiles)
# and CMake's targets shardalloc_static / shardalloc_freestanding differ:
# sources (globs expanded), compile options (warnings and per-target code
# generation flags left out: build.rs chooses those itself) and definitions.
cmake_minimum_required(VERSION 3.25)

file(STRINGS ${ROOT}/cmake/library-sources.txt _list_lines REGEX "^[a-z]+\\.[a-z]+ *=")
file(STRINGS ${CMAKE_LISTS} _cmake_lines REGEX "^[a-z]+\\.[a-z]+=")

function(_value lines key out)
  set(_v "")
  foreach(_line IN LISTS lines)
    if(_line MATCHES "^${key} *= *(.*)$")
      set(_v "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  set(${out} "${_v}" PARENT_SCOPE)
endfunction()

string(REGEX REPLACE "([][+.*()^$?|\\])" "\\\\\\1" _root_re "${ROOT}")
# _compare(what): records what only one side (_listed, _built) has.
macro(_compare what)
  set(_only_listed ${_listed})
  set(_only_built ${_built})
  if(_built)
    list(REMOVE_ITEM _only_listed ${_built})
  endif()
  if(_listed)
    list(REMOVE_ITEM _only_built ${_listed})
  endif()
  if(_only_listed OR _only_built)
    list(JOIN _only_listed " " _a)
    list(JOIN _only_built " " _b)
    list(APPEND _bad "${_lib} ${what}: only in library-sources.txt: [${_a}], only in CMake's target: [${_b}]")
  endif()
endmacro()

set(_bad "")
foreach(_lib hosted freestanding)
  list(LENGTH _bad _bad_before)
  # Sources: the list's patterns expanded as CMake's file(GLOB) does.
  _value("${_list_lines}" "${_lib}.sources" _patterns)
  separate_arguments(_patterns UNIX_COMMAND "${_patterns}")
  set(_listed "")
  foreach(_p IN LISTS _patterns)
    file(GLOB _files ${ROOT}/${_p})
    list(APPEND _listed ${_files})
  endforeach()
  _value("${_cmake_lines}" "${_lib}.sources" _built)
  separate_arguments(_built UNIX_COMMAND "${_built}")
  foreach(_var _listed _built)
    list(TRANSFORM ${_var} REPLACE "^${_root_re}/" "")
    list(REMOVE_DUPLICATES ${_var})
    list(SORT ${_var})
  endforeach()
  _compare(sources)

  # Options: warnings and target-specific code generation flags aside.
  _value("${_list_lines}" "${_lib}.flags" _listed)
  separate_arguments(_listed UNIX_COMMAND "${_listed}")
  _value("${_cmake_lines}" "${_lib}.options" _built)
  separate_arguments(_built UNIX_COMMAND "${_built}")
  list(FILTER _built EXCLUDE REGEX "^-W|^-mno-outline-atomics$")
  _compare(flags)

  _value("${_list_lines}" "${_lib}.defines" _listed)
  separate_arguments(_listed UNIX_COMMAND "${_listed}")
  _value("${_cmake_lines}" "${_lib}.defines" _built)
  separate_arguments(_built UNIX_COMMAND "${_built}")
  _compare(defines)
  list(LENGTH _bad _bad_after)
  if(_bad_after EQUAL _bad_before)
    message(STATUS "${_lib}: sources, flags and defines match CMake's target")
  endif()
endforeach()

if(_bad)
  list(JOIN _bad "\n" _text)
  message(FATAL_ERROR "cmake/library-sources.txt and the CMake targets differ (bindings/rust/build.rs "
                      "compiles what the file says; change both together):\n${_text}")
endif()
