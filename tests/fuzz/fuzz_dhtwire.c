/* fuzz_dhtwire — libFuzzer target for the DHT's packet and message codec
 * (host/core/dhtwire.c). The input is one datagram:
 *  1. pd_dht_packet_decode on it; when accepted, the ciphertext without
 *     its 16-byte tag is decoded as a message (what the lab's null cipher
 *     hands over, docs/protocol.md §11.3);
 *  2. pd_dht_msg_decode on the whole input.
 * Oracle beyond the sanitizers: an accepted packet's fields lie inside the
 * input and re-encode to the same bytes (WHOAREYOU whole, a HANDSHAKE up to
 * its ciphertext, every header); an accepted message re-encodes to exactly
 * the input (the codec is canonical); a refusal has a name. The input is
 * libFuzzer's exact-size buffer, so a read past the end is an ASan report.
 * Nothing outlives one input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dhtwire.h"

static uint8_t out[PD_DHT_MAX_PACKET + PD_DHT_MAX_NODES * (2 + PD_DHT_RECORD_MAX)];

static void check_msg(const uint8_t *data, size_t size) {
  pd_dht_msg_t m;
  pd_dhtwire_reason_t r = pd_dht_msg_decode(data, size, &m);
  if (r != PD_DHTW_OK && r != PD_DHTW_R_MESSAGE) abort();
  if (r != PD_DHTW_OK) return;
  size_t n = 0;
  if (pd_dht_msg_encode(&m, out, sizeof out, &n) != 0 || n != size || memcmp(out, data, n) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pd_dht_packet_t p;
  pd_dhtwire_reason_t r = pd_dht_packet_decode(data, size, &p);
  if ((unsigned)r >= PD_DHTW_R_COUNT || r == PD_DHTW_R_MESSAGE) abort();
  if (strcmp(pd_dhtwire_reason_name(r), "invalid") == 0) abort();
  if (r == PD_DHTW_OK) {
    pd_dht_header_encode(out, p.kind, p.nonce, p.src_id);
    if (p.header != data || memcmp(out, data, PD_DHT_HEADER_LEN) != 0) abort();
    if (p.kind == PD_DHT_WHOAREYOU) {
      pd_dht_whoareyou_encode(out, p.nonce, p.src_id, p.id_nonce, p.pubkey, p.record_seq);
      if (size != PD_DHT_WHOAREYOU_LEN || memcmp(out, data, size) != 0) abort();
    } else {
      if (p.ciphertext != data + p.ad_len || p.ad_len + p.ciphertext_len != size ||
          p.ciphertext_len < PD_DHT_MSG_HEAD + PD_DHT_TAG_LEN)
        abort();
      if (p.kind == PD_DHT_HANDSHAKE) {
        size_t n = 0;
        if (pd_dht_handshake_head_encode(out, sizeof out, &n, p.nonce, p.src_id, p.eph_pubkey,
                                         p.pubkey, p.id_signature, p.record, p.record_len) != 0 ||
            n != p.ad_len || memcmp(out, data, n) != 0)
          abort();
      }
      check_msg(p.ciphertext, p.ciphertext_len - PD_DHT_TAG_LEN);
    }
  }
  check_msg(data, size);
  return 0;
}
