#!/usr/bin/env python3
"""dht_vectors.py -- recompute the DHT handshake's key-schedule vector
without peerd's code.

docs/protocol.md §11.8 gives init_key for a handshake between two fixed
keys; tests/unit/test_dhtsess.c (INIT_KEY_HEX) checks that peerd derives
exactly that. This script derives it again from the same fixed inputs with
Python's hashlib (SHA-256, SHA-512, BLAKE2b) and the `cryptography` package
(Ed25519, X25519), building the WHOAREYOU by hand from §11.1 and converting
the responder's ed25519 public key to X25519 with the birational map
u = (1 + y) / (1 - y) mod 2^255 - 19 (what libsodium's
crypto_sign_ed25519_pk_to_curve25519 computes). It also checks the
responder's side: X25519 of the converted secret key (SHA-512 of the seed,
first half) and the ephemeral public key gives the same shared secret.

    python3 tests/tools/dht_vectors.py [SOURCE_DIR]

Exit 0: equal; 1: a difference; 77: `cryptography` is not installed.
"""
import hashlib
import os
import re
import sys

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                  X25519PublicKey)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    print("dht_vectors: python3 'cryptography' is not installed; skipped")
    sys.exit(77)

RAW = (Encoding.Raw, PublicFormat.Raw)
P = 2**255 - 19


def ed_pk(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(*RAW)


def node_id(pk):
    return hashlib.sha256(pk).digest()[:20]


def ed_pk_to_x(pk):
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def compute():
    seed_a = bytes(range(0, 32))
    seed_b = bytes(100 + i for i in range(32))
    pk_a, pk_b = ed_pk(seed_a), ed_pk(seed_b)
    id_a, id_b = node_id(pk_a), node_id(pk_b)
    # WHOAREYOU (§11.1): magic, version 1, kind 1, nonce, src_id,
    # id_nonce, pubkey, record_seq
    challenge = (b"pdht" + bytes([1, 1]) + bytes([0xa5]) * 12 + id_b + bytes([0x3c]) * 16 +
                 pk_b + bytes(8))
    assert len(challenge) == 94
    # crypto_kx_seed_keypair: sk = BLAKE2b-256(seed), pk = X25519 base point * sk
    eph_sk = hashlib.blake2b(bytes([0x11]) * 32, digest_size=32).digest()
    eph = X25519PrivateKey.from_private_bytes(eph_sk)
    eph_pk = eph.public_key().public_bytes(*RAW)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(ed_pk_to_x(pk_b)))
    # the responder: its ed25519 secret as X25519 (SHA-512 of the seed, first half)
    xsk_b = hashlib.sha512(seed_b).digest()[:32]
    shared_b = X25519PrivateKey.from_private_bytes(xsk_b).exchange(
        X25519PublicKey.from_public_bytes(eph_pk))
    if shared != shared_b:
        print("dht_vectors: the two sides' X25519 secrets differ")
        return None
    keys = hashlib.blake2b(b"peerd-dht-keys-v1" + shared + challenge + id_a + id_b + eph_pk,
                           digest_size=64).digest()
    return keys[:32].hex()


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    want = compute()
    if want is None:
        return 1
    bad = 0
    test = open(os.path.join(src, "tests/unit/test_dhtsess.c"), encoding="utf-8").read()
    m = re.search(r'#define INIT_KEY_HEX "([0-9a-f]{64})"', test)
    if not m or m.group(1) != want:
        print("tests/unit/test_dhtsess.c: INIT_KEY_HEX is %s, want %s" % (m and m.group(1), want))
        bad += 1
    doc = open(os.path.join(src, "docs/protocol.md"), encoding="utf-8").read()
    m = re.search(r"^    init_key ([0-9a-f]{64})$", doc, re.M)
    if not m or m.group(1) != want:
        print("docs/protocol.md: init_key is %s, want %s" % (m and m.group(1), want))
        bad += 1
    if bad:
        return 1
    print("dht_vectors: init_key %s recomputed independently, equal in test_dhtsess.c and docs" % want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
