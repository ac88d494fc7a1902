/* err — see err.h. */
#include "err.h"

#include <string.h>

const char *pd_strerror(int code) {
  switch (code) {
  case 0: return "ok";
  case PD_EINVAL: return "invalid input";
  case PD_ENOMEM: return "out of memory";
  case PD_ENOENT: return "not found";
  case PD_EEXIST: return "already exists";
  case PD_EUNROUTABLE: return "address not routable";
  case PD_EBANNED: return "address banned";
  case PD_ERANGE: return "value out of range";
  case PD_ETOOBIG: return "input too large";
  case PD_EFORMAT: return "wrong format or version";
  case PD_ECORRUPT: return "corrupt data";
  case PD_EFULL: return "slot occupied";
  case PD_EHOSTNAME: return "host name needs resolution";
  case PD_EIO: return "i/o error";
  default: break;
  }
  if (code < 0 && code > -4096) return strerror(-code);
  return "unknown error";
}
