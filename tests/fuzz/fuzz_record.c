/* fuzz_record — libFuzzer target for the node record codec
 * (host/core/record.c): the input is one encoded record.
 *  1. pd_record_decode with ed25519 (what the daemon runs on a record from
 *     the wire), any network;
 *  2. the same with a scheme that accepts every signature, so a mutated
 *     record whose id still matches its key gets through the whole decoder,
 *     then the getters over what it decoded, and pd_record_parse_trusted.
 * Oracle beyond the sanitizers: both decodes agree whenever the signature
 * is not the reason, pd_record_peek_seq reads the decoded sequence, a
 * decoded service and attribute are found again by name, and a record
 * compares equal to itself. Nothing outlives one input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

static int accept_all(void *ud, const uint8_t pk[PD_IDENTITY_PK_LEN], const uint8_t *msg,
                      size_t len, const uint8_t sig[PD_IDENTITY_SIG_LEN]) {
  (void)ud, (void)pk, (void)msg, (void)len, (void)sig;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pd_record_t r, t;
  const char *why = NULL;
  pd_record_reason_t real = pd_record_decode(data, size, NULL, NULL, &r, &why);
  if (real != PD_RECORD_OK && !why) abort();
  (void)pd_record_reason_name(real);

  pd_record_auth_t any = {.verify = accept_all};
  pd_record_reason_t lax = pd_record_decode(data, size, "peerd", &any, &r, &why);
  pd_record_reason_t trusted = pd_record_parse_trusted(data, size, &t);
  if (real != PD_RECORD_R_BAD_SIGNATURE && real != lax && lax != PD_RECORD_R_WRONG_NETWORK) abort();
  if (lax == PD_RECORD_OK) {
    if (trusted != PD_RECORD_OK || t.seq != r.seq || memcmp(t.id, r.id, sizeof r.id) != 0 ||
        t.nservices != r.nservices || t.nattrs != r.nattrs || strcmp(t.network, r.network) != 0)
      abort();
    if (pd_record_peek_seq(data, size) != r.seq) abort();
    bool service_only = false;
    (void)pd_record_placed(&r, &service_only);
    for (unsigned i = 0; i < r.nservices; i++)
      if (pd_record_service(&r, r.services[i].name) != &r.services[i]) abort();
    for (unsigned i = 0; i < r.nattrs; i++) {
      const char *v = pd_record_attr(&r, r.attrs[i].key);
      if (!v || strcmp(v, r.attrs[i].value) != 0) abort();
    }
    bool same = false;
    if (pd_record_compare(data, size, r.seq, data, size, r.seq, &same) != PD_RECORD_OK || !same) abort();
  }
  return 0;
}
