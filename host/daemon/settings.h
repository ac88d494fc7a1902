/* settings — the run settings of `peerd run`, whichever way they are given.
 *
 * Owns: the one table of settings (config-file key, long flag, kind,
 * default), the validation of every value (the same checks and messages for
 * a flag and a config-file line), where each value came from (default, file
 * or flag), the rule that a flag overrides the file (a repeatable flag
 * replaces the file's whole list), the cross-checks made once everything is
 * in (--min-outbound <= --max-outbound), the finished pd_daemon_config_t,
 * and the effective config as JSON (GET /v1/status) and as text
 * (`peerd config-check`).
 * Does not own: the command line itself (main.c: getopt), reading a config
 * file (conffile.c), what the values do (the daemon).
 */
#ifndef PD_SETTINGS_H
#define PD_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "daemon.h"

typedef enum pd_setting_source {
  PD_SET_DEFAULT = 0,
  PD_SET_FILE = 1,
  PD_SET_FLAG = 2,
} pd_setting_source_t;

typedef enum pd_setting_kind {
  PD_SK_BOOL,  /* a flag without a value; in a file: true | false */
  PD_SK_ONOFF, /* on | off (in a file also true | false) */
  PD_SK_INT,   /* an unsigned integer within the setting's range */
  PD_SK_STR,   /* a string (an address, a path, a name) */
  PD_SK_LIST,  /* repeatable or comma-separated; in a file: { "a", "b" } or "a,b" */
  PD_SK_MAP,   /* NAME=VALUE, repeatable; in a file: { name = value, ... } */
} pd_setting_kind_t;

#define PD_SETTINGS_MAX_PRIVATE 64 /* --private-peer entries (IPs, subnets, ids) */

typedef struct pd_settings pd_settings_t;

/* How many settings there are; index i in 0..count-1. */
size_t pd_settings_count(void);
/* The config-file key ("max_inbound"), the long flag without dashes
 * ("max-inbound"), the kind, and a one-line description of accepted values. */
const char *pd_settings_key(size_t i);
const char *pd_settings_flag(size_t i);
pd_setting_kind_t pd_settings_kind(size_t i);
/* The index of a config-file key (or its alias, e.g. "service" for
 * "services"), or -1. */
int pd_settings_find_key(const char *key);

/* All defaults, no sources. PD_ENOMEM. */
int pd_settings_new(pd_settings_t **out);
void pd_settings_free(pd_settings_t *s);

/* Apply one value to setting i from src. BOOL from a flag: value NULL
 * means true; from a file "true" | "false". LIST from a flag: the flag's
 * argument (comma-separated); from a file: one element per call. MAP: one
 * NAME=VALUE per call. A flag replaces what the file set for i (the first
 * flag of a list clears the file's list). 0, or PD_EINVAL with a message in
 * err naming the flag (--max-inbound) or the key (max_inbound). */
int pd_settings_apply(pd_settings_t *s, size_t i, const char *value, pd_setting_source_t src,
                      char *err, size_t cap);
/* Mark list or map setting i as given by src before its elements (so an
 * empty list from the file is the file's). */
void pd_settings_touch(pd_settings_t *s, size_t i, pd_setting_source_t src);

/* Cross-checks and the finished config. 0, or PD_EINVAL with err. */
int pd_settings_finish(pd_settings_t *s, char *err, size_t cap);
/* The config (valid after pd_settings_finish, as long as s lives). */
const pd_daemon_config_t *pd_settings_config(const pd_settings_t *s);
pd_daemon_config_t *pd_settings_config_mut(pd_settings_t *s);

/* The config file the settings came from (NULL: none); copied. */
int pd_settings_set_file(pd_settings_t *s, const char *path);
const char *pd_settings_file(const pd_settings_t *s);

/* {"file": PATH|null, "settings": {KEY: {"value": V, "source": "default|file|flag"}}}
 * as a malloc'd string (NULL when out of memory). Values are typed: integers,
 * booleans, "on"/"off", strings (null when unset), arrays, objects. */
char *pd_settings_json(const pd_settings_t *s);
/* One line per setting, "key = value  -- source", in the file's syntax. */
void pd_settings_print(const pd_settings_t *s, FILE *f);

#endif
