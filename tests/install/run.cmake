# Installs dssync into a scratch prefix and builds three outside projects with
# it: find_package against the installed package, add_subdirectory of the
# source tree, and FetchContent of the source tree (local, nothing downloaded).
# Each runs consumer/main.cpp, a 4-rank ring all-reduce checked in closed form,
# and says where the package puts dssync-run (DSSYNC_RUN_EXECUTABLE). The
# installed launcher itself must run a 2-rank job from the prefix.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir> [-DCXX=<c++ compiler>]
#         -P tests/install/run.cmake
cmake_minimum_required(VERSION 3.25)

set(COMMON_ARGS)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

# consumer(<name> <source dir> <launcher> <cmake args...>): configures, builds
# and runs one consumer project and checks what it printed, and that its
# configure found dssync-run at <launcher>.
function(consumer name source launcher)
  set(bin "${WORK_DIR}/${name}")
  step("${name}: configure" ${CMAKE_COMMAND} -S "${source}" -B "${bin}" ${COMMON_ARGS} ${ARGN})
  string(FIND "${STEP_OUTPUT}" "dssync consumer: DSSYNC_RUN_EXECUTABLE=${launcher}\n" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "install test: ${name}'s configure did not find dssync-run at ${launcher}:\n${STEP_OUTPUT}")
  endif()
  step("${name}: build" ${CMAKE_COMMAND} --build "${bin}")
  step("${name}: run" "${bin}/consumer")
  set(expected "dssync consumer: ring all-reduce over 4 ranks OK, sum[999] = 10000")
  string(FIND "${STEP_OUTPUT}" "${expected}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "install test: ${name} printed\n${STEP_OUTPUT}\nexpected: ${expected}")
  endif()
  set(CONSUMER_BIN "${bin}" PARENT_SCOPE)
endfunction()

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

# The tools: installed executable into bin/, and the launcher works from
# there: 2 ranks of a shell, each printing its rank, bounded by --timeout.
set(LAUNCHER "${PREFIX}/bin/dssync-run")
foreach(_tool "${LAUNCHER}" "${PREFIX}/bin/dssync-netbed")
  if(NOT EXISTS "${_tool}")
    message(FATAL_ERROR "install test: ${_tool} was not installed")
  endif()
  step("installed ${_tool} is executable" test -x "${_tool}")
endforeach()
step("installed dssync-run: 2 ranks" "${LAUNCHER}" -n 2 --timeout 60
     sh -c "echo \"rank \$DSSYNC_RANK of \$DSSYNC_WORLD_SIZE\"")
foreach(_rank 0 1)
  string(FIND "${STEP_OUTPUT}" "[${_rank}] rank ${_rank} of 2\n" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "install test: the installed dssync-run printed\n${STEP_OUTPUT}\n"
                        "expected the line: [${_rank}] rank ${_rank} of 2")
  endif()
endforeach()
if(NOT EXISTS "${PREFIX}/libexec/dssync/netbed-measure.py")
  message(FATAL_ERROR "install test: netbed's measurement helper was not installed "
                      "into ${PREFIX}/libexec/dssync")
endif()
step("installed dssync-netbed --help" "${PREFIX}/bin/dssync-netbed" --help)
string(FIND "${STEP_OUTPUT}" "a shaped test network" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "install test: dssync-netbed --help printed\n${STEP_OUTPUT}")
endif()

# CMAKE_FIND_USE_PACKAGE_REGISTRY=OFF: only the prefix may satisfy find_package.
consumer(find_package "${HERE}/consumer" "${LAUNCHER}" "-DCMAKE_PREFIX_PATH=${PREFIX}"
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
file(STRINGS "${CONSUMER_BIN}/CMakeCache.txt" _dir REGEX "^dssync_DIR:")
string(REGEX REPLACE "^[^=]*=" "" _dir "${_dir}")
string(FIND "${_dir}" "${PREFIX}/" _at)
if(NOT _at EQUAL 0)
  message(FATAL_ERROR "install test: find_package found dssync in '${_dir}', not under ${PREFIX}")
endif()

# 2. The source tree as a subdirectory of another project.
consumer(add_subdirectory "${HERE}/subdir_consumer" "${SOURCE_DIR}/scripts/tools/dssync-run"
         "-DDSSYNC_SOURCE_DIR=${SOURCE_DIR}")

# 3. The source tree through FetchContent.
consumer(fetchcontent "${HERE}/fetchcontent_consumer" "${SOURCE_DIR}/scripts/tools/dssync-run"
         "-DDSSYNC_SOURCE_DIR=${SOURCE_DIR}")

message(STATUS "install test: the installed tools, and the find_package, add_subdirectory and FetchContent consumers OK")
