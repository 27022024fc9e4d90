#pragma once
// DSSYNC_TEST_ASAN is defined when the test is built with AddressSanitizer
// (GCC says so with __SANITIZE_ADDRESS__, Clang with __has_feature).

#if defined(__SANITIZE_ADDRESS__)
#define DSSYNC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DSSYNC_TEST_ASAN 1
#endif
#endif
