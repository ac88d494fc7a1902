#!/usr/bin/env python3
"""seal_vectors.py -- recompute protocol v3's test vectors without peerd's code.

docs/protocol.md §5.7 lists the bytes of a v3 handshake between two fixed
nodes; tests/unit/test_seal.c checks that peerd produces exactly those bytes
(its V_* constants). This script derives every one of them again from the same
fixed inputs with Python's hashlib (BLAKE2b, SHA-256) and the `cryptography`
package (X25519, Ed25519, ChaCha20-Poly1305), building the frames by hand from
the layouts in docs/protocol.md, and checks that the test's constants and the
doc's blocks are exactly those values (the same names, the same bytes).

    python3 tests/tools/seal_vectors.py [SOURCE_DIR]

Exit 0: all equal; 1: a difference (printed); 77: `cryptography` is not
installed (Debian: python3-cryptography), nothing checked. A check by hand and
in ctest (`seal_vectors`); nothing in the build depends on it.
"""
import hashlib
import os
import re
import struct
import sys

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                                  X25519PublicKey)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    print("seal_vectors: python3 'cryptography' is not installed; skipped")
    sys.exit(77)

MAGIC = bytes.fromhex("f5706431")
RAW = (Encoding.Raw, PublicFormat.Raw)


def seq(first):
    return bytes(range(first, first + 32))


def b2b(data, n=32, **kw):
    return hashlib.blake2b(data, digest_size=n, **kw).digest()


def frame(ftype, payload):
    """magic 4 | type 1 | flags 1 (0) | length u32 BE | payload (§1)."""
    return MAGIC + bytes([ftype, 0]) + struct.pack(">I", len(payload)) + payload


def hello(node_id, pk, challenge, ip4, port):
    """HELLO (§4.1): versions 3..3, timestamp 1700000000, a listen address,
    network "peerd", agent "peerd/vector", no v2 extension."""
    p = struct.pack(">HH", 3, 3) + node_id + pk + challenge
    p += struct.pack(">q", 1700000000)
    p += b"\x01" + bytes(10) + b"\xff\xff" + bytes(ip4) + struct.pack(">H", port)
    p += bytes([5]) + b"peerd" + bytes([12]) + b"peerd/vector"
    return frame(1, p)


def seal(key, counter, inner):
    """SEALED (§5.3): header with length = inner + 16 is the AD; nonce = 4
    zero bytes || counter u64 LE; payload = ciphertext || tag."""
    hdr = MAGIC + bytes([9, 0]) + struct.pack(">I", len(inner) + 16)
    nonce = bytes(4) + struct.pack("<Q", counter)
    return hdr + ChaCha20Poly1305(key).encrypt(nonce, inner, hdr)


def rekey(key, epoch):
    """crypto_kdf_derive_from_key(32, epoch, "peerdrk3", key) (§5.4)."""
    return b2b(b"", 32, key=key, salt=struct.pack("<Q", epoch) + bytes(8),
               person=b"peerdrk3" + bytes(8))


def compute():
    v = {}
    nodes = {}
    for side, first in (("D", 0x00), ("L", 0x20)):
        sk = Ed25519PrivateKey.from_private_bytes(seq(first))
        pk = sk.public_key().public_bytes(*RAW)
        nodes[side] = sk
        v["V_%s_NODE_PK" % side] = pk
        v["V_%s_NODE_ID" % side] = hashlib.sha256(pk).digest()[:20]
    eph = {}
    for side, first in (("D", 0x40), ("L", 0x60)):
        esk = b2b(seq(first))  # crypto_kx_seed_keypair: sk = BLAKE2b-256(seed)
        epk = X25519PrivateKey.from_private_bytes(esk).public_key().public_bytes(*RAW)
        eph[side] = esk
        v["V_%s_EPH_SK" % side] = esk
        v["V_%s_EPH_PK" % side] = epk
        v["V_%s_KEYX" % side] = frame(8, epk)
    dpk, lpk = v["V_D_EPH_PK"], v["V_L_EPH_PK"]
    q = X25519PrivateKey.from_private_bytes(eph["D"]).exchange(X25519PublicKey.from_public_bytes(lpk))
    q2 = X25519PrivateKey.from_private_bytes(eph["L"]).exchange(X25519PublicKey.from_public_bytes(dpk))
    assert q == q2
    v["V_SHARED"] = q
    keys = b2b(q + dpk + lpk, 64)  # crypto_kx: the dialler is the client
    v["V_KEY_L2D"], v["V_KEY_D2L"] = keys[:32], keys[32:]
    v["V_D_HELLO"] = hello(v["V_D_NODE_ID"], v["V_D_NODE_PK"], seq(0x80), (192, 0, 2, 1), 7411)
    v["V_L_HELLO"] = hello(v["V_L_NODE_ID"], v["V_L_NODE_PK"], seq(0xa0), (192, 0, 2, 2), 7411)
    v["V_D_HELLO_HASH"] = b2b(v["V_D_HELLO"])
    v["V_L_HELLO_HASH"] = b2b(v["V_L_HELLO"])
    t = b2b(b"peerd-transcript-v3" + MAGIC + dpk + lpk + v["V_D_HELLO_HASH"] + v["V_L_HELLO_HASH"])
    v["V_TRANSCRIPT"] = t
    for side, role in (("D", 0), ("L", 1)):
        msg = b"peerd-auth-v3" + bytes([role]) + t
        assert len(msg) == 46
        v["V_%s_AUTH_MSG" % side] = msg
        v["V_%s_SIG" % side] = nodes[side].sign(msg)
    v["V_D_SEALED_HELLO"] = seal(v["V_KEY_D2L"], 0, v["V_D_HELLO"])
    v["V_L_SEALED_HELLO"] = seal(v["V_KEY_L2D"], 0, v["V_L_HELLO"])
    v["V_D_SEALED_ACK"] = seal(v["V_KEY_D2L"], 1, frame(2, v["V_D_SIG"]))
    v["V_L_SEALED_ACK"] = seal(v["V_KEY_L2D"], 1, frame(2, v["V_L_SIG"]))
    v["V_KEY_D2L_1"] = rekey(v["V_KEY_D2L"], 1)
    v["V_KEY_L2D_1"] = rekey(v["V_KEY_L2D"], 1)
    # Frame #4096 of the dialler: the first under the epoch-1 key, counter 0.
    v["V_D_SEALED_4096"] = seal(v["V_KEY_D2L_1"], 0, frame(3, struct.pack(">Q", 4096)))
    return v


def from_test(path):
    """The V_* string constants of test_seal.c (adjacent literals joined)."""
    text = open(path, encoding="utf-8").read()
    out = {}
    pat = r'static const char (V_[A-Z0-9_]+)\[\] =\s*(?:/\*[^*]*\*/)?((?:\s*"[0-9a-f]*")+);'
    for m in re.finditer(pat, text):
        out[m.group(1)] = bytes.fromhex("".join(re.findall(r'"([0-9a-f]*)"', m.group(2))))
    return out


def from_doc(path):
    """The doc's vector blocks of §5 (the DHT's, §11, are another test's):
    an indented line starting with a V_* name, then indented lines of hex
    (spaces allowed) up to a blank line."""
    out, name, in5 = {}, None, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("## "):
            in5 = line.startswith("## 5.")
        if not in5:
            name = None
            continue
        m = re.match(r"^    (V_[A-Z0-9_]+)\b", line)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name and re.match(r"^    [0-9a-f ]+$", line.rstrip("\n")):
            out[name] += line.replace(" ", "").strip()
        else:
            name = None
    return {k: bytes.fromhex(h) for k, h in out.items()}


def compare(what, got, want):
    bad = 0
    for k in sorted(set(got) | set(want)):
        if k not in got:
            print("%s: %s missing" % (what, k))
            bad += 1
        elif k not in want:
            print("%s: %s is not a vector" % (what, k))
            bad += 1
        elif got[k] != want[k]:
            print("%s: %s differs:\n  has  %s\n  want %s" % (what, k, got[k].hex(), want[k].hex()))
            bad += 1
    return bad


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    want = compute()
    bad = compare("tests/unit/test_seal.c", from_test(os.path.join(src, "tests/unit/test_seal.c")), want)
    bad += compare("docs/protocol.md", from_doc(os.path.join(src, "docs/protocol.md")), want)
    if bad:
        print("seal_vectors: %d differences" % bad)
        return 1
    print("seal_vectors: %d vectors recomputed independently, equal in test_seal.c and docs" % len(want))
    print("%d passed, 0 failed" % (2 * len(want)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
