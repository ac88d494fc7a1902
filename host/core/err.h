/* err — peerd's error space.
 *
 * Owns: the negative error codes every core function returns (libuv style:
 * 0 = success, < 0 = failure; -errno values pass through unchanged) and
 * pd_strerror(). Does not own: logging (drivers log), messages about a
 * particular input (functions that parse input hand back a static reason
 * string through a `const char **why` out-parameter).
 */
#ifndef PD_ERR_H
#define PD_ERR_H

/* Our own codes live far below -errno's range. */
enum {
  PD_EINVAL = -10001,      /* malformed input */
  PD_ENOMEM = -10002,      /* allocation failed or a cap was reached */
  PD_ENOENT = -10003,      /* no such entry */
  PD_EEXIST = -10004,      /* already present */
  PD_EUNROUTABLE = -10005, /* address is valid but not routable */
  PD_EBANNED = -10006,     /* address is banned */
  PD_ERANGE = -10007,      /* value out of range */
  PD_ETOOBIG = -10008,     /* input longer than a documented limit */
  PD_EFORMAT = -10009,     /* file or document in the wrong format/version */
  PD_ECORRUPT = -10010,    /* file or document damaged */
  PD_EFULL = -10011,       /* table/slot occupied, nothing done */
  PD_EHOSTNAME = -10012,   /* host is a name, needs DNS resolution first */
  PD_EIO = -10013,         /* I/O failed (drivers only) */
};

/* Human text for any code this project returns (ours or -errno). Never NULL. */
const char *pd_strerror(int code);

#endif
