# install_system.cmake — runs at install time (install(SCRIPT), after
# install.cmake's install(CODE) set PD_SOURCE_DIR, PD_BINARY_DIR, PD_BINDIR):
# installs the systemd unit and the config file for the prefix being
# installed to now (CMAKE_INSTALL_PREFIX here is `--prefix`, or /usr under
# CPack), honouring DESTDIR as every install rule does.
#   unit:   PREFIX/lib/systemd/system/peerd.service, packaging/peerd.service
#           with /usr/bin/peerd and /etc/peerd/peerd.conf rewritten to the
#           installed binary and config
#   config: SYSCONF/peerd/peerd.conf, SYSCONF = /etc for the prefixes /usr
#           and /, PREFIX/etc otherwise (as GNUInstallDirs does); a file that
#           is already there is kept (the operator's edits win)
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")
if(prefix STREQUAL "/usr" OR prefix STREQUAL "")
  set(sysconf "/etc")
else()
  set(sysconf "${prefix}/etc")
endif()
if(IS_ABSOLUTE "${PD_BINDIR}")
  set(bindir "${PD_BINDIR}")
else()
  set(bindir "${prefix}/${PD_BINDIR}")
endif()

file(READ "${PD_SOURCE_DIR}/packaging/peerd.service" unit)
string(REPLACE "/usr/bin/peerd" "${bindir}/peerd" unit "${unit}")
string(REPLACE "/etc/peerd/peerd.conf" "${sysconf}/peerd/peerd.conf" unit "${unit}")
# one staging file per destination, so two installs at once do not race
string(MD5 tag "$ENV{DESTDIR}|${prefix}")
set(stage "${PD_BINARY_DIR}/install-stage/${tag}")
file(MAKE_DIRECTORY "${stage}")
file(WRITE "${stage}/peerd.service" "${unit}")
file(INSTALL DESTINATION "${prefix}/lib/systemd/system" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${stage}/peerd.service")

if(EXISTS "$ENV{DESTDIR}${sysconf}/peerd/peerd.conf")
  message(STATUS "Keeping: $ENV{DESTDIR}${sysconf}/peerd/peerd.conf (already there)")
else()
  file(INSTALL DESTINATION "${sysconf}/peerd" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${PD_SOURCE_DIR}/packaging/peerd.conf")
endif()
