/* conffile — `peerd --config FILE`: a config file in Lua syntax, read into
 * the run settings (settings.h). See conffile.c and docs/config.md. */
#ifndef PD_CONFFILE_H
#define PD_CONFFILE_H

#include <stddef.h>

#include "settings.h"

#define PD_CONFFILE_MAX (1024u * 1024) /* bytes read at most */

/* Read path and apply its settings (source: file). 0, or < 0 with
 * "PATH:LINE: message" in err. */
int pd_conffile_load(pd_settings_t *s, const char *path, char *err, size_t cap);
/* The same for text already in memory; name is used in messages. */
int pd_conffile_load_text(pd_settings_t *s, const char *name, const char *text, size_t len,
                          char *err, size_t cap);

#endif
