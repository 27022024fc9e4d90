# Warnings as errors and sanitizers for dssync's own targets only; users of the
# installed package never see these flags.
add_library(dssync_strict INTERFACE)
target_compile_options(dssync_strict INTERFACE -Wall -Wextra -Wpedantic -Werror)
if(DSSYNC_SANITIZE)
  list(JOIN DSSYNC_SANITIZE "," _dssync_san)
  target_compile_options(dssync_strict INTERFACE -fsanitize=${_dssync_san} -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=all)
  target_link_options(dssync_strict INTERFACE -fsanitize=${_dssync_san})
endif()
