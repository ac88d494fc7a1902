# libFuzzer targets (tests/fuzz, docs/fuzzing.md), included from CMakeLists.txt.
#
# PEERD_FUZZ (default ON with clang and PEERD_TESTS): build fuzz_<name> for
# each tests/fuzz/fuzz_<name>.c and register a ctest test `fuzz_<name>`
# (label `fuzz`) that replays tests/fuzz/regressions/<name>/ and then fuzzes
# a scratch copy of tests/fuzz/corpus/<name>/ for PEERD_FUZZ_SECONDS.
#
# The code under test needs libFuzzer's coverage instrumentation, which the
# ordinary modules do not carry (it would slow every other test). So each
# module a target links is mirrored as pd_fuzz_<module>: the same sources,
# include directory and dependencies (pd_X -> pd_fuzz_X), compiled with
# -fsanitize=fuzzer-no-link. ASan+UBSan come from the build (PEERD_SANITIZE,
# as in scripts/test's clang pass) or are added here.
include(CheckCSourceCompiles)

set(pd_fuzz_default OFF)
if(CMAKE_C_COMPILER_ID MATCHES "Clang" AND PEERD_TESTS)
  set(pd_fuzz_default ON)
endif()
option(PEERD_FUZZ "Build the libFuzzer targets (clang) and their bounded ctest runs" ${pd_fuzz_default})
set(PEERD_FUZZ_SECONDS 5 CACHE STRING "Seconds each fuzz_* ctest test fuzzes (-max_total_time)")

if(PEERD_FUZZ AND PEERD_TESTS)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=fuzzer)
  set(CMAKE_REQUIRED_FLAGS -fsanitize=fuzzer)
  check_c_source_compiles("
    #include <stddef.h>
    #include <stdint.h>
    int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }"
    PEERD_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  unset(CMAKE_REQUIRED_FLAGS)
  if(NOT PEERD_HAVE_LIBFUZZER)
    message(WARNING "PEERD_FUZZ: ${CMAKE_C_COMPILER} cannot link -fsanitize=fuzzer "
                    "(clang with libclang-rt-14-dev is needed): no fuzz targets")
  endif()
endif()

if(PEERD_FUZZ AND PEERD_TESTS AND PEERD_HAVE_LIBFUZZER)
  set(PD_FUZZ_SAN "")
  if(NOT PEERD_SANITIZE)
    set(PD_FUZZ_SAN -fsanitize=address,undefined -fno-sanitize-recover=all)
  endif()
  # -O1 whatever the build type: libFuzzer's advice, several times the
  # executions per second of -O0 (the Debug ASan build).
  set(PD_FUZZ_COPTS -fsanitize=fuzzer-no-link ${PD_FUZZ_SAN} -fno-omit-frame-pointer -O1 -g)

  # pd_fuzz_mirror(MODULE): pd_fuzz_MODULE from pd_MODULE (recursively its deps).
  function(pd_fuzz_mirror m)
    if(TARGET pd_fuzz_${m} OR NOT TARGET pd_${m})
      return()
    endif()
    get_target_property(srcs pd_${m} SOURCES)
    get_target_property(incs pd_${m} INTERFACE_INCLUDE_DIRECTORIES)
    get_target_property(libs pd_${m} LINK_LIBRARIES)
    set(out "")
    if(libs)
      foreach(l IN LISTS libs)
        if(l MATCHES "^pd_(.+)$")
          pd_fuzz_mirror(${CMAKE_MATCH_1})
          list(APPEND out pd_fuzz_${CMAKE_MATCH_1})
        else()
          list(APPEND out ${l})
        endif()
      endforeach()
    endif()
    add_library(pd_fuzz_${m} STATIC EXCLUDE_FROM_ALL ${srcs})
    target_include_directories(pd_fuzz_${m} PUBLIC ${incs})
    target_compile_options(pd_fuzz_${m} PRIVATE ${PD_FUZZ_COPTS})
    target_link_libraries(pd_fuzz_${m} PUBLIC ${out})
  endfunction()

  # The config file's parser lives in the daemon module (libuv and all);
  # the fuzz copy takes only the files the settings need (conffile.c,
  # settings.c, config.c's defaults, log.c's level names), none of the loop.
  if(TARGET pd_daemon)
    foreach(m fsio dialer self wire)
      pd_fuzz_mirror(${m})
    endforeach()
    add_library(pd_fuzz_conffile STATIC EXCLUDE_FROM_ALL host/daemon/conffile.c
                host/daemon/settings.c host/daemon/config.c host/daemon/log.c)
    target_include_directories(pd_fuzz_conffile PUBLIC ${CMAKE_SOURCE_DIR}/host/daemon)
    target_compile_options(pd_fuzz_conffile PRIVATE ${PD_FUZZ_COPTS})
    target_link_libraries(pd_fuzz_conffile PUBLIC pd_fuzz_fsio pd_fuzz_dialer pd_fuzz_self
                          pd_fuzz_wire PkgConfig::LUA PkgConfig::JANSSON PkgConfig::UV)
  endif()

  # pd_fuzz_target(NAME MAXLEN DEPS modules...): tests/fuzz/fuzz_NAME.c.
  add_custom_target(fuzz)
  function(pd_fuzz_target name maxlen)
    cmake_parse_arguments(F "" "" "DEPS" ${ARGN})
    set(deps "")
    foreach(d IN LISTS F_DEPS)
      pd_fuzz_mirror(${d})
      if(NOT TARGET pd_fuzz_${d})
        return()
      endif()
      list(APPEND deps pd_fuzz_${d})
    endforeach()
    add_executable(fuzz_${name} tests/fuzz/fuzz_${name}.c)
    target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${PD_FUZZ_SAN} -fno-omit-frame-pointer -O1 -g)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${PD_FUZZ_SAN})
    target_link_libraries(fuzz_${name} PRIVATE ${deps} PkgConfig::SODIUM)
    add_dependencies(fuzz fuzz_${name})
    add_test(NAME fuzz_${name}
      COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run.sh $<TARGET_FILE:fuzz_${name}> ${name}
              ${PEERD_FUZZ_SECONDS} ${maxlen} ${CMAKE_BINARY_DIR}/fuzz-scratch)
    set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz TIMEOUT 300
      ENVIRONMENT "PEERD_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endfunction()

  pd_fuzz_target(wire 70000 DEPS wire)
  pd_fuzz_target(record 600 DEPS record)
  pd_fuzz_target(netaddr 300 DEPS netaddr)
  pd_fuzz_target(bookstore 65536 DEPS bookstore)
  pd_fuzz_target(http_api 16384 DEPS http api self)
  pd_fuzz_target(peer 70000 DEPS peer record)
  pd_fuzz_target(sealed 70000 DEPS peer seal)
  pd_fuzz_target(conffile 8192 DEPS conffile)
  pd_fuzz_target(dhtwire 1400 DEPS dhtwire)

  # Writes the seed corpora (run by hand: tests/fuzz/gen_corpus.c says how).
  if(TARGET pd_fuzz_bookstore AND TARGET pd_fuzz_record AND TARGET pd_fuzz_wire AND TARGET pd_fuzz_dhtwire)
    add_executable(fuzz_gen_corpus EXCLUDE_FROM_ALL tests/fuzz/gen_corpus.c)
    target_link_libraries(fuzz_gen_corpus PRIVATE pd_fuzz_bookstore pd_fuzz_record pd_fuzz_wire
                          pd_fuzz_dhtwire)
    target_link_options(fuzz_gen_corpus PRIVATE ${PD_FUZZ_SAN})
  endif()
endif()
