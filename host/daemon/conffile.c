/* conffile — `peerd --config FILE`: a config file in Lua syntax.
 *
 * Owns: reading the file (at most PD_CONFFILE_MAX bytes), running it in an
 * empty sandbox (no libraries, no functions to call; an instruction budget
 * and a memory cap, as policies have), turning each assignment into the
 * setting's text form and handing it to settings.c with its file:line.
 * The file is plain assignments, named like the long flags with `_` for `-`:
 *     max_inbound = 40
 *     listen = "0.0.0.0:7411"
 *     services = { p2p = 26656 }
 *     seeds = { "seed1.example.org:7411", "seed2.example.org:7411" }
 * An unknown key, a wrong type, a bad value or a key set twice is an error
 * "FILE:LINE: message". A name read before it is set is an error too.
 * Does not own: what the values mean and their checks (settings.c), the
 * command line (main.c). Documented in docs/config.md.
 */
#include "conffile.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "err.h"
#include "fsio.h"

#define MEMORY_CAP (8u * 1024 * 1024)
#define HOOK_EVERY 10000
#define HOOK_LIMIT 100 /* 10^6 instructions */

typedef struct load {
  pd_settings_t *s;
  size_t mem;
  int ticks;
  int line_of[64]; /* line where each setting was set; 0 = not yet */
} load_t;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  load_t *ld = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    ld->mem -= osize;
    free(ptr);
    return NULL;
  }
  if (nsize > osize && ld->mem + (nsize - osize) > MEMORY_CAP) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) ld->mem = ld->mem - osize + nsize;
  return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  load_t *ld = NULL;
  lua_getallocf(L, (void **)&ld);
  if (++ld->ticks > HOOK_LIMIT) {
    luaL_where(L, 0);
    lua_pushstring(L, "the config file runs too long (a loop?)");
    lua_concat(L, 2);
    lua_error(L);
  }
}

/* Raise "FILE:LINE: message" for the assignment being run. */
static int conf_error(lua_State *L, const char *fmt, const char *a, const char *b) {
  luaL_where(L, 1); /* level 1: the chunk running the assignment */
  lua_pushfstring(L, fmt, a, b);
  lua_concat(L, 2);
  return lua_error(L);
}

static int current_line(lua_State *L) {
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) return ar.currentline;
  return 0;
}

static const char *lua_kind(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return "an integer";
  return luaL_typename(L, idx);
}

/* Apply one text value; a settings error is raised at the assignment. */
static void apply(lua_State *L, load_t *ld, size_t i, const char *v) {
  char err[300];
  if (pd_settings_apply(ld->s, i, v, PD_SET_FILE, err, sizeof err) < 0) {
    conf_error(L, "%s%s", err, "");
  }
}

/* The text of a scalar at idx for setting i (kinds other than LIST/MAP). */
static const char *scalar_text(lua_State *L, size_t i, int idx, char *buf, size_t cap) {
  const char *key = pd_settings_key(i);
  switch (pd_settings_kind(i)) {
  case PD_SK_BOOL:
    if (!lua_isboolean(L, idx)) conf_error(L, "%s must be true or false, got %s", key, lua_kind(L, idx));
    return lua_toboolean(L, idx) ? "true" : "false";
  case PD_SK_ONOFF:
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx) ? "on" : "off";
    if (lua_type(L, idx) != LUA_TSTRING) {
      conf_error(L, "%s must be \"on\", \"off\", true or false, got %s", key, lua_kind(L, idx));
    }
    return lua_tostring(L, idx);
  case PD_SK_INT:
    if (lua_isinteger(L, idx)) {
      snprintf(buf, cap, "%lld", (long long)lua_tointeger(L, idx));
      return buf;
    }
    if (lua_type(L, idx) == LUA_TSTRING && strcmp(key, "seed") == 0) return lua_tostring(L, idx);
    conf_error(L, "%s must be an integer, got %s", key, lua_kind(L, idx));
    return NULL;
  default:
    if (lua_type(L, idx) != LUA_TSTRING) conf_error(L, "%s must be a string, got %s", key, lua_kind(L, idx));
    return lua_tostring(L, idx);
  }
}

/* __newindex(env, key, value): one setting. */
static int on_assign(lua_State *L) {
  load_t *ld = NULL;
  lua_getallocf(L, (void **)&ld);
  if (lua_type(L, 2) != LUA_TSTRING) return conf_error(L, "only names can be set here%s%s", "", "");
  const char *key = lua_tostring(L, 2);
  int idx = pd_settings_find_key(key);
  if (idx < 0) {
    if (strcmp(key, "config") == 0) return conf_error(L, "config cannot be set in a config file%s%s", "", "");
    return conf_error(L, "unknown setting '%s' (settings are the long flags with _ for -; "
                         "docs/config.md lists them)%s", key, "");
  }
  size_t i = (size_t)idx;
  const char *canon = pd_settings_key(i);
  if (i < sizeof ld->line_of / sizeof ld->line_of[0] && ld->line_of[i]) {
    char first[16];
    snprintf(first, sizeof first, "%d", ld->line_of[i]);
    return conf_error(L, "%s set twice (first at line %s)", canon, first);
  }
  if (lua_isnil(L, 3)) return conf_error(L, "%s = nil: leave the line out to keep the default%s", canon, "");
  char buf[32];
  pd_setting_kind_t kind = pd_settings_kind(i);
  if (kind == PD_SK_LIST) {
    pd_settings_touch(ld->s, i, PD_SET_FILE);
    if (lua_type(L, 3) == LUA_TSTRING) {
      apply(L, ld, i, lua_tostring(L, 3));
    } else if (lua_istable(L, 3)) {
      lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
      lua_pushnil(L);
      while (lua_next(L, 3) != 0) { /* only 1..n */
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) {
          return conf_error(L, "%s must be a list { \"a\", \"b\" }: found a named field%s", canon, "");
        }
        lua_pop(L, 1);
      }
      for (lua_Integer k = 1; k <= n; k++) {
        lua_rawgeti(L, 3, k);
        if (lua_type(L, -1) != LUA_TSTRING) {
          return conf_error(L, "%s: every element must be a string, got %s", canon, lua_kind(L, -1));
        }
        apply(L, ld, i, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else {
      return conf_error(L, "%s must be a list of strings { \"a\", \"b\" }, got %s", canon, lua_kind(L, 3));
    }
  } else if (kind == PD_SK_MAP) {
    if (!lua_istable(L, 3)) {
      return conf_error(L, "%s must be a table { name = value, ... }, got %s", canon, lua_kind(L, 3));
    }
    pd_settings_touch(ld->s, i, PD_SET_FILE);
    /* names in sorted order, so the effective config does not depend on
     * the table's iteration order */
    const char *names[16];
    size_t nn = 0;
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        return conf_error(L, "%s: names must be strings (name = value)%s", canon, "");
      }
      if (nn == sizeof names / sizeof names[0]) return conf_error(L, "%s: too many entries%s", canon, "");
      names[nn++] = lua_tostring(L, -2); /* the key stays in the table, so the string lives */
      lua_pop(L, 1);
    }
    for (size_t a = 1; a < nn; a++) {
      for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
        const char *t = names[b];
        names[b] = names[b - 1];
        names[b - 1] = t;
      }
    }
    for (size_t k = 0; k < nn; k++) {
      lua_getfield(L, 3, names[k]);
      char elem[200];
      if (lua_isinteger(L, -1)) {
        snprintf(elem, sizeof elem, "%s=%lld", names[k], (long long)lua_tointeger(L, -1));
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        snprintf(elem, sizeof elem, "%s=%s", names[k], lua_tostring(L, -1));
      } else {
        return conf_error(L, "%s.%s must be a string or an integer", canon, names[k]);
      }
      apply(L, ld, i, elem);
      lua_pop(L, 1);
    }
  } else {
    apply(L, ld, i, scalar_text(L, i, 3, buf, sizeof buf));
  }
  if (i < sizeof ld->line_of / sizeof ld->line_of[0]) ld->line_of[i] = current_line(L);
  /* remember the value, so that later lines may read it */
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, lua_upvalueindex(1));
  return 0;
}

/* __index(env, key): a setting set earlier in the file, else an error. */
static int on_read(lua_State *L) {
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return 1;
  const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  return conf_error(L, "'%s' is not defined here (the file has no functions or libraries; "
                       "a name can only be read after it is set)%s", key, "");
}

static int run_chunk(lua_State *L) {
  /* 1: the compiled chunk; its _ENV becomes the sandbox */
  lua_newtable(L); /* env */
  lua_newtable(L); /* metatable */
  lua_newtable(L); /* values set so far */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, on_assign, 1);
  lua_setfield(L, -3, "__newindex");
  lua_pushcclosure(L, on_read, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  if (!lua_setupvalue(L, 1, 1)) lua_pop(L, 1);
  lua_call(L, 0, 0);
  return 0;
}

int pd_conffile_load_text(pd_settings_t *s, const char *name, const char *text, size_t len,
                          char *err, size_t cap) {
  load_t ld;
  memset(&ld, 0, sizeof ld);
  ld.s = s;
  lua_State *L = lua_newstate(capped_alloc, &ld);
  if (!L) {
    snprintf(err, cap, "%s: out of memory", name);
    return PD_ENOMEM;
  }
  lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
  char chunkname[300];
  snprintf(chunkname, sizeof chunkname, "@%s", name);
  int rc = 0;
  /* text only: a precompiled chunk is refused */
  if (luaL_loadbufferx(L, text, len, chunkname, "t") != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    if (!m) m = "cannot load";
    /* a syntax error names FILE:LINE; a binary chunk or out of memory does
     * not (found by tests/fuzz/fuzz_conffile) */
    if (strncmp(m, name, strlen(name)) == 0) snprintf(err, cap, "%s", m);
    else snprintf(err, cap, "%s: %s", name, m);
    rc = PD_EINVAL;
  } else {
    lua_pushcfunction(L, run_chunk);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      const char *m = lua_tostring(L, -1);
      if (!m) m = "error in the config file";
      if (strncmp(m, name, strlen(name)) == 0) snprintf(err, cap, "%s", m);
      else snprintf(err, cap, "%s: %s", name, m); /* e.g. out of memory: no line */
      rc = PD_EINVAL;
    }
  }
  lua_close(L);
  if (rc == 0) rc = pd_settings_set_file(s, name);
  return rc;
}

int pd_conffile_load(pd_settings_t *s, const char *path, char *err, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, PD_CONFFILE_MAX, &text, &len);
  if (rc < 0) {
    snprintf(err, cap, "%s: cannot read the config file: %s", path,
             rc == PD_ETOOBIG ? "larger than 1 MiB" : pd_strerror(rc));
    return rc;
  }
  rc = pd_conffile_load_text(s, path, text, len, err, cap);
  free(text);
  return rc;
}
