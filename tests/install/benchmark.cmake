# The dssync::benchmark component as a user gets it: installs dssync where
# Google Benchmark is found (library only: no tests, benchmarks or examples),
# builds examples/benchmark_variant.cpp as an outside project against the
# installed package with find_package(dssync COMPONENTS benchmark), runs it
# briefly with repetitions in random interleaving, and checks that every
# variant ran and its JSON has the counters. Without Google Benchmark the same
# find_package must fail, naming the component.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch dir> [-DCXX=<c++ compiler>]
#         -P tests/install/benchmark.cmake
cmake_minimum_required(VERSION 3.25)

set(COMMON_ARGS -DCMAKE_BUILD_TYPE=Release)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

# 1. Install the library alone; Google Benchmark is found, so the component is.
step("dssync: configure" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" ${COMMON_ARGS}
     -DDSSYNC_BUILD_TESTS=OFF -DDSSYNC_BUILD_BENCHMARKS=OFF -DDSSYNC_BUILD_EXAMPLES=OFF
     "-DCMAKE_INSTALL_PREFIX=${PREFIX}")
step("dssync: install" ${CMAKE_COMMAND} --install "${WORK_DIR}/build")
foreach(_file include/dssync/benchmark.hpp include/dssync/benchmark/sim.hpp
              include/dssync/benchmark/bandwidth.hpp)
  if(NOT EXISTS "${PREFIX}/${_file}")
    message(FATAL_ERROR "install test: ${PREFIX}/${_file} was not installed")
  endif()
endforeach()
file(GLOB_RECURSE _targets "${PREFIX}/*/dssyncBenchmarkTargets.cmake")
if(NOT _targets)
  message(FATAL_ERROR "install test: dssyncBenchmarkTargets.cmake was not installed")
endif()

# 2. The example, outside, against the prefix only.
set(bin "${WORK_DIR}/consumer")
set(consumer_args -S "${HERE}/benchmark_consumer" ${COMMON_ARGS} "-DCMAKE_PREFIX_PATH=${PREFIX}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DDSSYNC_SOURCE_DIR=${SOURCE_DIR}")
step("consumer: configure" ${CMAKE_COMMAND} ${consumer_args} -B "${bin}")
set(with_sim FALSE)
string(FIND "${STEP_OUTPUT}" "dssync_sim_FOUND=TRUE" _at)
if(NOT _at EQUAL -1)
  set(with_sim TRUE)
endif()
step("consumer: build" ${CMAKE_COMMAND} --build "${bin}")

# 3. Run it briefly: the 1 MiB rows (and the simulator's, when built), two
# repetitions interleaved, medians, JSON out.
set(json "${WORK_DIR}/variant.json")
step("consumer: run" "${bin}/benchmark_variant" --benchmark_filter=bytes:1048576/
     --benchmark_min_time=0.01 --benchmark_repetitions=2
     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
     "--benchmark_out=${json}" --benchmark_out_format=json)
set(rows inproc/ring_shift_g2 inproc/random_g2 inproc/allreduce_ring)
if(with_sim)
  list(APPEND rows sim/ring_shift_g2 sim/random_g2 sim/allreduce_ring)
endif()
file(READ "${json}" _json)
string(JSON _n LENGTH "${_json}" benchmarks)
math(EXPR _last "${_n} - 1")
set(medians "")
foreach(_i RANGE ${_last})
  string(JSON _name GET "${_json}" benchmarks ${_i} name)
  string(JSON _aggregate ERROR_VARIABLE _no GET "${_json}" benchmarks ${_i} aggregate_name)
  if(NOT _aggregate STREQUAL "median")
    continue()
  endif()
  list(APPEND medians "${_name}")
  foreach(_counter algbw_GBps busbw_GBps sent_MB_per_rank vs_allreduce_model)
    string(JSON _value ERROR_VARIABLE _missing GET "${_json}" benchmarks ${_i} ${_counter})
    if(_missing OR NOT _value GREATER 0)
      message(FATAL_ERROR "install test: ${_name} has no positive ${_counter} ('${_value}'):\n${_json}")
    endif()
  endforeach()
  # The ring all-reduce sends exactly the ring's bytes (_value: the last
  # counter read, vs_allreduce_model).
  if(_name MATCHES "^inproc/allreduce_ring/" AND NOT _value EQUAL 1)
    message(FATAL_ERROR "install test: ${_name}: vs_allreduce_model = ${_value}, not 1")
  endif()
endforeach()
foreach(_row IN LISTS rows)
  set(_want "${_row}/n:")
  string(FIND "${medians}" "${_want}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "install test: no median row of ${_row} in ${json}; rows: ${medians}")
  endif()
endforeach()

# 4. Without Google Benchmark the component is not found and says so.
execute_process(COMMAND ${CMAKE_COMMAND} ${consumer_args} -B "${WORK_DIR}/consumer-nobench"
                        -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
                WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                ERROR_VARIABLE _out)
string(FIND "${_out}" "component benchmark not found" _at)
if(_rc EQUAL 0 OR _at EQUAL -1)
  message(FATAL_ERROR "install test: find_package(dssync COMPONENTS benchmark) without Google "
                      "Benchmark should fail naming the component (${_rc}):\n${_out}")
endif()
message(STATUS "ok: without Google Benchmark, COMPONENTS benchmark is not found")

list(LENGTH medians _rows)
message(STATUS "install test: dssync::benchmark from the installed package OK (${_rows} median rows, sim: ${with_sim})")
