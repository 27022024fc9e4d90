# Compiles one snippet and checks how the compiler answers: a snippet whose
# first line says "// expect: compiles" must compile; any other must fail, with
# the regular expression after "expect:" in the compiler's output (the
# concept's name or the library's message) and in at most MAX_LINES lines, so
# that a wrong type is reported at the API and not from deep inside a kernel.
#   cmake -DCXX=... -DINCLUDE=... -DSOURCE=... -DMAX_LINES=... -P run.cmake
file(STRINGS "${SOURCE}" first LIMIT_COUNT 1)
string(REGEX REPLACE "^// expect: " "" expect "${first}")
execute_process(
  COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE}" "${SOURCE}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(APPEND out "${err}")
if(expect STREQUAL "compiles")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} should compile:\n${out}")
  endif()
  return()
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must be rejected (${expect})")
endif()
if(NOT out MATCHES "${expect}")
  message(FATAL_ERROR "${SOURCE}: the compiler's message does not say '${expect}':\n${out}")
endif()
string(REGEX MATCHALL "\n" newlines "${out}")
list(LENGTH newlines lines)
if(lines GREATER MAX_LINES)
  message(FATAL_ERROR "${SOURCE}: ${lines} lines of errors (at most ${MAX_LINES}):\n${out}")
endif()
message(STATUS "${SOURCE}: rejected in ${lines} lines, naming '${expect}'")
