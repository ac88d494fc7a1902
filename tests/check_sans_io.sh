#!/bin/sh
# check_sans_io.sh LIB... — the architectural rule, checked on the built code.
# Every symbol a core library (host/core) takes from outside the core must be
# on the allowlist below: memory, strings, formatting, maths, address text
# conversion, hashing/signatures (libsodium, libcrypto), JSON (jansson) and
# the Lua C API with the sandbox's libraries. A clock, a random source, a
# socket, a file, a process or libuv is a failure naming the library and the
# symbol. Sources are checked too: no host/core file includes libuv, POSIX I/O,
# clock, thread or signal headers (stdio.h stays: snprintf).
set -eu
src=$(dirname "$0")/../host/core
fail=0
allow='^(pd_.*|mem(chr|cmp|cpy|move|set)|str(chr|cmp|dup|error|len|ncmp|nlen|str|tol|toul|toll|toull|rchr|ndup|casecmp|ncasecmp|cspn|spn)|(aligned_alloc|calloc|malloc|realloc|free)|(v?snprintf)|(log|log2|pow|exp|sqrt|floor|ceil|fabs)|qsort|bsearch|inet_(ntop|pton)|(htons|ntohs|htonl|ntohl)|__.*|_GLOBAL_OFFSET_TABLE_|(SHA256.*|EVP_.*)|crypto_(hash_sha256|shorthash|sign_detached|sign_seed_keypair|sign_verify_detached|sign_ed25519_.*|generichash(|_init|_update|_final)|scalarmult(|_base|_ed25519.*)|aead_chacha20poly1305_ietf_(en|de)crypt(_detached)?|kx_(seed_keypair|client_session_keys|server_session_keys)|kdf_derive_from_key)|sodium_(memzero|memcmp|bin2base64|base642bin|bin2hex|hex2bin)|json_.*|lua_.*|luaL_(argerror|checkany|checkinteger|checklstring|checknumber|checktype|checkudata|checkversion_|error|loadbufferx|newmetatable|optlstring|optinteger|ref|unref|requiref|setfuncs|traceback|len|tolstring|testudata|getmetafield|checkstack)|luaopen_(base|coroutine|math|string|table|utf8))$'
for lib in "$@"; do
  bad=$(nm -u "$lib" | awk '{print $2}' | sort -u | grep -Ev "$allow" || true)
  if [ -n "$bad" ]; then
    echo "sans-I/O rule broken: $(basename "$lib") uses: $(echo $bad)"
    fail=1
  fi
done
hdr=$(grep -nE '#include[[:space:]]*<(uv\.h|netdb\.h|unistd\.h|fcntl\.h|time\.h|sys/time\.h|sys/random\.h|pthread\.h|dirent\.h|signal\.h)>' "$src"/*.c "$src"/*.h || true)
if [ -n "$hdr" ]; then
  echo "sans-I/O rule broken: host/core includes an I/O, clock or OS header:"
  echo "$hdr"
  fail=1
fi
[ "$fail" -eq 0 ] && echo "host/core: $# libraries, every outside symbol on the allowlist; no I/O headers"
exit "$fail"
