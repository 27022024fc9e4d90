# Installs dssync into a scratch prefix and builds three outside projects with
# it: find_package against the installed package, add_subdirectory of the
# source tree, and FetchContent of the source tree (local, nothing downloaded).
# Each runs consumer/main.cpp, a 4-rank ring all-reduce checked in closed form.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir> [-DCXX=<c++ compiler>]
#         -P tests/install/run.cmake
cmake_minimum_required(VERSION 3.25)

foreach(_var SOURCE_DIR WORK_DIR)
  if(NOT ${_var})
    message(FATAL_ERROR "run.cmake: pass -D${_var}=...")
  endif()
endforeach()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
get_filename_component(WORK_DIR "${WORK_DIR}" ABSOLUTE)
set(HERE "${CMAKE_CURRENT_LIST_DIR}")
set(PREFIX "${WORK_DIR}/prefix")

# Same compiler and generator for every project; Ninja when there is one.
set(COMMON_ARGS)
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

# consumer(<name> <source dir> <cmake args...>): configures, builds and runs
# one consumer project and checks what it printed.
function(consumer name source)
  set(bin "${WORK_DIR}/${name}")
  step("${name}: configure" ${CMAKE_COMMAND} -S "${source}" -B "${bin}" ${COMMON_ARGS} ${ARGN})
  step("${name}: build" ${CMAKE_COMMAND} --build "${bin}")
  step("${name}: run" "${bin}/consumer")
  set(expected "dssync consumer: ring all-reduce over 4 ranks OK, sum[999] = 10000")
  string(FIND "${STEP_OUTPUT}" "${expected}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "install test: ${name} printed\n${STEP_OUTPUT}\nexpected: ${expected}")
  endif()
  set(CONSUMER_BIN "${bin}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# 1. Install as the README says, with the default options, on a machine that
# lacks the test and benchmark frameworks (hidden from find_package here): the
# configure must say that tests and benchmarks are off, and install.
step("dssync: configure" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" ${COMMON_ARGS}
     -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
     "-DCMAKE_INSTALL_PREFIX=${PREFIX}")
foreach(_said "doctest not found" "Google Benchmark not found")
  string(FIND "${STEP_OUTPUT}" "${_said}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "install test: the configure did not say '${_said}':\n${STEP_OUTPUT}")
  endif()
endforeach()
step("dssync: install" ${CMAKE_COMMAND} --install "${WORK_DIR}/build")
if(NOT EXISTS "${PREFIX}/include/dssync/dssync.hpp")
  message(FATAL_ERROR "install test: ${PREFIX}/include/dssync/dssync.hpp was not installed")
endif()
file(GLOB_RECURSE _configs "${PREFIX}/*/dssyncConfig.cmake" "${PREFIX}/*/dssyncConfigVersion.cmake"
     "${PREFIX}/*/dssyncTargets.cmake")
list(LENGTH _configs _n)
if(NOT _n EQUAL 3)
  message(FATAL_ERROR "install test: expected the package config, version and targets files, found: ${_configs}")
endif()

# CMAKE_FIND_USE_PACKAGE_REGISTRY=OFF: only the prefix may satisfy find_package.
consumer(find_package "${HERE}/consumer" "-DCMAKE_PREFIX_PATH=${PREFIX}"
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
file(STRINGS "${CONSUMER_BIN}/CMakeCache.txt" _dir REGEX "^dssync_DIR:")
string(REGEX REPLACE "^[^=]*=" "" _dir "${_dir}")
string(FIND "${_dir}" "${PREFIX}/" _at)
if(NOT _at EQUAL 0)
  message(FATAL_ERROR "install test: find_package found dssync in '${_dir}', not under ${PREFIX}")
endif()

# 2. The source tree as a subdirectory of another project.
consumer(add_subdirectory "${HERE}/subdir_consumer" "-DDSSYNC_SOURCE_DIR=${SOURCE_DIR}")

# 3. The source tree through FetchContent.
consumer(fetchcontent "${HERE}/fetchcontent_consumer" "-DDSSYNC_SOURCE_DIR=${SOURCE_DIR}")

message(STATUS "install test: find_package, add_subdirectory and FetchContent consumers OK")
