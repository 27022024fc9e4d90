# What the training example (examples/train) needs beyond dssync: Eigen for
# the GEMMs, CLI11 for the command line, zlib for the gzip files. Defines the
# interface target dssync_train_deps when all three are found; the example and
# its tests are built only then.
find_package(Eigen3 3.3 QUIET CONFIG)
find_package(CLI11 QUIET CONFIG)
find_package(ZLIB QUIET)
if(TARGET Eigen3::Eigen AND TARGET CLI11::CLI11 AND ZLIB_FOUND)
  add_library(dssync_train_deps INTERFACE)
  target_link_libraries(dssync_train_deps INTERFACE dssync::dssync Eigen3::Eigen CLI11::CLI11 ZLIB::ZLIB)
  target_include_directories(dssync_train_deps INTERFACE ${PROJECT_SOURCE_DIR}/examples/train)
  if(DSSYNC_NATIVE)
    # GCC 12's AVX-512 headers set off -Wmaybe-uninitialized inside Eigen's
    # kernels (a false positive of GCC 12), which -Werror would make fatal.
    target_compile_options(dssync_train_deps INTERFACE -march=native
      $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
  endif()
else()
  message(WARNING "dssync: the training example needs Eigen 3, CLI11 and zlib (Debian: "
                  "libeigen3-dev libcli11-dev zlib1g-dev); it and its tests are not built")
endif()
