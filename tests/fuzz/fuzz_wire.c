/* fuzz_wire — libFuzzer target for the plain frame codec (host/core/wire.c).
 *
 * Input: byte 0 picks a message type and a chunk size, the rest is bytes.
 *  1. pd_wire_parse_payload(type, rest): a payload without its header;
 *  2. pd_wire_decoder_feed over rest as a TCP stream (default magic), cut
 *     into chunks of 1..16 bytes or all at once, until it needs more bytes
 *     or rejects the stream.
 * Oracle beyond the sanitizers: every message the decoder accepts encodes
 * again (pd_wire_encode; the codec never refuses what it accepts), to
 * exactly pd_wire_encoded_size bytes, and that frame decodes again. A
 * SEALED frame (v3), which only the session cipher makes, is rebuilt from
 * its header and payload instead (pd_wire_write_header), must be the bytes
 * that were fed, and decodes again with pd_wire_decode_frame. What is
 * inside a SEALED frame is fuzz_sealed's (it needs the session keys).
 * Nothing outlives one input but scratch buffers that every input
 * overwrites before reading. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const uint8_t MAGIC[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;

/* A SEALED frame: header and payload as decoded, rebuilt. */
static void check_sealed(const pd_wire_msg_t *m, uint8_t *frame, pd_wire_msg_t *again) {
  size_t len = m->sealed.len;
  if (len < PD_WIRE_SEALED_MIN || len > PD_WIRE_MAX_PAYLOAD || !m->sealed.hdr || !m->sealed.data)
    abort();
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, (uint32_t)len, frame);
  if (memcmp(frame, m->sealed.hdr, PD_WIRE_HEADER_LEN) != 0) abort();
  memcpy(frame + PD_WIRE_HEADER_LEN, m->sealed.data, len);
  if (pd_wire_decode_frame(MAGIC, frame, PD_WIRE_HEADER_LEN + len, again) != PD_WIRE_R_NONE ||
      again->type != PD_WIRE_SEALED || again->sealed.len != len ||
      again->sealed.data != frame + PD_WIRE_HEADER_LEN)
    abort();
}

static void check_roundtrip(const pd_wire_msg_t *m, uint8_t *frame, pd_wire_msg_t *again) {
  if (m->type == PD_WIRE_SEALED) {
    check_sealed(m, frame, again);
    return;
  }
  size_t len = 0;
  size_t want = pd_wire_encoded_size(m);
  if (want == 0 || want > PD_WIRE_MAX_FRAME) abort();
  if (pd_wire_encode(MAGIC, m, frame, PD_WIRE_MAX_FRAME, &len) != 0) abort();
  if (len != want) abort();
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t used = 0;
  int rc = pd_wire_decoder_feed(&d, frame, len, &used, again);
  if (rc != PD_WIRE_MESSAGE || used != len || again->type != m->type) abort();
  pd_wire_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned type = data[0] % PD_WIRE_TYPE_COUNT;
  size_t chunk = (data[0] >> 3) & 15; /* 0: the whole rest at once */
  data++;
  size--;

  /* scratch space, overwritten before every read (a fresh 256 KiB + 2 x
   * 50 KiB from ASan's allocator per input cost 30x in executions/s) */
  static pd_wire_msg_t msg_buf, again_buf;
  static uint8_t frame[PD_WIRE_MAX_FRAME];
  pd_wire_msg_t *msg = &msg_buf, *again = &again_buf;

  (void)pd_wire_parse_payload(type, data, size, msg);

  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t off = 0;
  while (off < size) {
    size_t n = chunk ? chunk : size - off;
    if (n > size - off) n = size - off;
    size_t used = 0;
    int rc = pd_wire_decoder_feed(&d, data + off, n, &used, msg);
    if (used > n) abort();
    if (rc == PD_WIRE_MESSAGE) {
      check_roundtrip(msg, frame, again);
      off += used;
      continue;
    }
    if (rc != PD_WIRE_NEED_MORE) {
      if (pd_wire_decoder_reason(&d) == PD_WIRE_R_NONE) abort();
      break;
    }
    if (used != n) abort();
    off += n;
  }
  (void)pd_wire_decoder_mid_frame(&d);
  pd_wire_decoder_free(&d);
  return 0;
}
