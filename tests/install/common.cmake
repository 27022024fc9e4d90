# What the install tests share (included by run.cmake and benchmark.cmake):
# the arguments, a scratch WORK_DIR emptied, PREFIX inside it, COMMON_ARGS for
# every project configured (the same compiler, Ninja when there is one, and
# whatever the including script put in COMMON_ARGS before), and step().
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir> [-DCXX=<c++ compiler>] -P <script>
foreach(_var SOURCE_DIR WORK_DIR)
  if(NOT ${_var})
    get_filename_component(_script "${CMAKE_SCRIPT_MODE_FILE}" NAME)
    message(FATAL_ERROR "${_script}: pass -D${_var}=...")
  endif()
endforeach()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
get_filename_component(WORK_DIR "${WORK_DIR}" ABSOLUTE)
set(HERE "${CMAKE_CURRENT_LIST_DIR}")
set(PREFIX "${WORK_DIR}/prefix")

if(CXX)
  list(APPEND COMMON_ARGS "-DCMAKE_CXX_COMPILER=${CXX}")
endif()
find_program(NINJA NAMES ninja ninja-build)
if(NINJA)
  list(APPEND COMMON_ARGS -G Ninja "-DCMAKE_MAKE_PROGRAM=${NINJA}")
endif()

# step(<what> <command...>): runs the command in WORK_DIR and stops everything
# with its output when it fails. Its output is kept in STEP_OUTPUT.
function(step what)
  execute_process(COMMAND ${ARGN}
                  WORKING_DIRECTORY "${WORK_DIR}"
                  RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "install test: ${what} failed (${rc})\n  command: ${cmd}\n${out}")
  endif()
  message(STATUS "ok: ${what}")
  set(STEP_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
