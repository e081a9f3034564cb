# cmake -DREADELF=<readelf> -DLIBS="a.so;b.so" -P check-needed.cmake
#
# Fails unless every library's DT_NEEDED entries are libc (libc.so.*) and at
# most the dynamic loader (ld-linux*.so.*, ld-*.so.*): a preloaded
# libshardalloc.so must not drag libstdc++, libm or libgcc_s into every
# program it is loaded into (docs/override.md, "What a program loads").
cmake_minimum_required(VERSION 3.25)
foreach(_var READELF LIBS)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "check-needed: -D${_var}=... missing")
  endif()
endforeach()

set(_bad)
foreach(_lib IN LISTS LIBS)
  if(NOT EXISTS "${_lib}")
    message(FATAL_ERROR "check-needed: ${_lib} does not exist (build it first)")
  endif()
  execute_process(COMMAND ${READELF} -d ${_lib} OUTPUT_VARIABLE _text RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "check-needed: ${READELF} -d ${_lib} failed: ${_err}")
  endif()
  # " 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]"
  string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]+\\]" _entries "${_text}")
  set(_needed)
  foreach(_e IN LISTS _entries)
    string(REGEX REPLACE ".*\\[([^]]+)\\]" "\\1" _name "${_e}")
    list(APPEND _needed ${_name})
  endforeach()
  list(JOIN _needed " " _needed_text)
  message(STATUS "${_lib}: NEEDED ${_needed_text}")
  set(_has_libc FALSE)
  foreach(_name IN LISTS _needed)
    if(_name MATCHES "^libc\\.so(\\.[0-9]+)*$")
      set(_has_libc TRUE)
    elseif(NOT _name MATCHES "^ld-linux[-_a-z0-9.]*\\.so(\\.[0-9]+)*$" AND NOT _name MATCHES "^ld-[a-z0-9.]*\\.so(\\.[0-9]+)*$")
      list(APPEND _bad "${_lib}: ${_name}")
    endif()
  endforeach()
  if(NOT _has_libc)
    list(APPEND _bad "${_lib}: no libc.so among the NEEDED entries (readelf output not understood?)")
  endif()
endforeach()

if(_bad)
  list(JOIN _bad "\n  " _bad_text)
  message(FATAL_ERROR "libraries beyond libc and the dynamic loader are needed:\n  ${_bad_text}")
endif()
message(STATUS "DT_NEEDED: libc only")
