# install.cmake — what `cmake --install` puts where, and the .deb (CPack).
# Included at the end of CMakeLists.txt. Paths are GNUInstallDirs' under
# the prefix given at install time (`cmake --install build --prefix DIR`,
# default CMAKE_INSTALL_PREFIX; CPack's .deb uses /usr):
#   bin/peerd, bin/peerctl                 the programs
#   share/peerd/policies/                  the default policies: peerd finds them
#                                          from its own location (../share/peerd/policies)
#   share/peerd/examples/{scenarios,policies}  `peerd sim` scenarios and example policies
#   share/man/man8/peerd.8, man1/peerctl.1 man pages (every man/*.8 and man/*.1)
#   share/doc/peerd/                       README.md, docs/*.md (in docs/), examples/peerd.conf
#   lib/systemd/system/peerd.service       the unit, its paths rewritten for the prefix
#   etc/peerd/peerd.conf                   the config the unit reads (/etc for /usr);
#                                          an existing one is never overwritten
# The unit and the config go through cmake/install_system.cmake at install
# time, so that they name the prefix actually installed to.

if(TARGET peerd)
  install(TARGETS peerd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
# peerctl may be declared after this file is included: decide at the end of
# the directory.
function(pd_install_peerctl)
  if(TARGET peerctl)
    install(TARGETS peerctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL pd_install_peerctl)
else()
  pd_install_peerctl()
endif()

install(DIRECTORY ${CMAKE_SOURCE_DIR}/policies/
        DESTINATION ${CMAKE_INSTALL_DATADIR}/peerd/policies
        FILES_MATCHING PATTERN "*.lua" PATTERN "README.md")
# The scenarios name their policies relative to themselves (../../policies,
# ../policies/NAME): installed side by side they still find them.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/scenarios ${CMAKE_SOURCE_DIR}/examples/policies
        DESTINATION ${CMAKE_INSTALL_DATADIR}/peerd/examples)

file(GLOB PD_MAN8 CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/man/*.8)
file(GLOB PD_MAN1 CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/man/*.1)
if(PD_MAN8)
  install(FILES ${PD_MAN8} DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
endif()
if(PD_MAN1)
  install(FILES ${PD_MAN1} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

file(GLOB PD_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PD_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/peerd.conf DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

install(CODE "set(PD_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
set(PD_BINARY_DIR \"${CMAKE_BINARY_DIR}\")
set(PD_BINDIR \"${CMAKE_INSTALL_BINDIR}\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/install_system.cmake)

# --- the .deb: `cpack -G DEB` in the build directory --------------------------
set(CPACK_PACKAGE_NAME peerd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "peerd")
set(CPACK_PACKAGE_CONTACT "peerd maintainers <peerd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "peer-discovery sidecar for peer-to-peer nodes")
set(CPACK_PACKAGE_DESCRIPTION "peerd finds, remembers, ranks and hands out peers for a
peer-to-peer node. It keeps a Bitcoin-addrman-exact address book, bans
misbehaving addresses, runs sandboxed Lua policies for every decision and
answers the node over a local HTTP/JSON API.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install into the staging root with DESTDIR, so /etc/peerd lands in the
# package and the unit and config name /usr and /etc (install_system.cmake).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # peerd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' libraries (dpkg-shlibdeps): liblua5.4-0, libuv1,
# libjansson4, libsodium23, libssl3, libhttp-parser2.9, libc6.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles ${CMAKE_SOURCE_DIR}/packaging/deb/postinst
    ${CMAKE_SOURCE_DIR}/packaging/deb/prerm ${CMAKE_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
