/* fuzz_conffile — libFuzzer target for the config file
 * (host/daemon/conffile.c pd_conffile_load_text, Lua syntax in an empty
 * sandbox with an instruction budget and a memory cap) and the settings it
 * hands to (host/daemon/settings.c, then pd_settings_finish).
 * Input: the file's text (any bytes; Lua's binary chunks are refused by
 * the loader's text mode).
 * Oracle beyond the sanitizers: a refusal always comes with a message
 * naming the file ("fuzz.conf:..."); no Lua state or settings outlive one
 * input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conffile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pd_settings_t *s = NULL;
  if (pd_settings_new(&s) != 0) abort();
  char err[600] = "";
  int rc = pd_conffile_load_text(s, "fuzz.conf", (const char *)data, size, err, sizeof err);
  if (rc < 0) {
    if (strncmp(err, "fuzz.conf", 9) != 0) abort();
  } else {
    err[0] = '\0';
    rc = pd_settings_finish(s, err, sizeof err);
    if (rc < 0 && err[0] == '\0') abort();
  }
  pd_settings_free(s);
  return 0;
}
