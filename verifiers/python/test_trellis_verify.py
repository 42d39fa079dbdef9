"""Tests of the second verifier against the values stated in docs/proof-format.md and the test
vectors of testdata/proofs. Run: python3 -m unittest discover -s verifiers/python"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trellis_verify as tv  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
VECTORS = os.path.join(REPO, "testdata", "proofs", "vectors.json")
SCRIPT = os.path.join(HERE, "trellis_verify.py")

# Appendix A, copied from the document.
GENESIS_A = """{
  "chain_id": "example-chain",
  "genesis_time_ms": 1700000000000,
  "validators": [
    {
      "name": "validator-1",
      "consensus_key": "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    }
  ],
  "accounts": [
    {
      "name": "member-1",
      "org": "org-1",
      "role": "member",
      "public_key": "db995fe25169d141cab9bbba92baa01f9f2e1ece7df4cb2ac05190f37fcc1f9d"
    }
  ]
}
"""

BUNDLE_A = """{
  "format": "trellis.anchor-bundle/v2",
  "chain_id": "example-chain",
  "digest": "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0",
  "record": {
    "sender": "db995fe25169d141cab9bbba92baa01f9f2e1ece7df4cb2ac05190f37fcc1f9d",
    "tag": "invoice-0001",
    "tx_hash": "7171717171717171717171717171717171717171717171717171717171717171"
  },
  "state": {
    "height": 2,
    "root": "f99d9e85c5b00f3ea7bda7b2c48535909d88f04eb476219b207e2834fa569a03"
  },
  "state_proof": "0ac80101885bc7636166d858ebdd6075c8ab698f705c8cf526e50be27e40d30d233e747ebef8f35b75ad3f23fa29aaff04f539a4145af95e75f8377d3a1bf37124580bde0300000002a4315da6e917243ef74f5d1b278aa727d811aa982f59ecf07530322d088b62c72c15dde20b56001c10ed811d63518b9eadb23e7b8613b6feb9c64f834774899502f0fc450c2a6bea178a06940431f0e041169fdcc007d95ca421be5f50eff58623022cad475dbf57af04d51ec53a6324987911452d8a650729e92c84dc6add1ad300",
  "genesis_digest": "dc9dfa7344c5933f5dd5fa417665616b824446efea8fea2a50bd8cda91bf21ef",
  "genesis_proof": "0a870101f0fc450c2a6bea178a06940431f0e041169fdcc007d95ca421be5f50eff58623022cad475dbf57af04d51ec53a6324987911452d8a650729e92c84dc6add1ad30200000001e3a215be7973282b32982f074ed98a6e2695070dfc1598bf103e388f1ba9219b1ff159b9e0797904c9248ab25bee3409baa8f76103c304377f7e785520c34d4400",
  "headers": [
    "0a0d6578616d706c652d636861696e180320032a2033333333333333333333333333333333333333333333333333333333333333333220444444444444444444444444444444444444444444444444444444444444444440e8d795ffbc314a205555555555555555555555555555555555555555555555555555555555555555522408021220f99d9e85c5b00f3ea7bda7b2c48535909d88f04eb476219b207e2834fa569a03"
  ],
  "commit_qc": "0a4a10041804222011111111111111111111111111111111111111111111111111111111111111112a207d0eba81ab188e0f618a29cca0725022124015234415484514b43f868911598130031201011a4030b4d08266b520e4cac7a88c07d7e5ad1a3d1d8f0d3b1728c8eb864ea0167531c34e60828e9b5cfec1912a72b3da141f699e3b52dc7dccdf620fc6b6aee35e0d",
  "epoch_changes": []
}
"""

VERDICT_A = json.loads(
    '{"valid":true,"chain_id":"example-chain","digest":"d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0'
    'd0d0d0d0d0d0d0d0d0d0d0d0d0","tag":"invoice-0001","sender":"db995fe25169d141cab9bbba92baa01f'
    '9f2e1ece7df4cb2ac05190f37fcc1f9d","tx_hash":"7171717171717171717171717171717171717171717171'
    '717171717171717171","state_height":2,"epoch":0,"signers":1,"committee_size":1}'
)

KEY_1 = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
KEY_41 = "db995fe25169d141cab9bbba92baa01f9f2e1ece7df4cb2ac05190f37fcc1f9d"
ROOT_A = "f99d9e85c5b00f3ea7bda7b2c48535909d88f04eb476219b207e2834fa569a03"
HEADER_ID_A = "7d0eba81ab188e0f618a29cca0725022124015234415484514b43f8689115981"
GENESIS_DIGEST_A = "dc9dfa7344c5933f5dd5fa417665616b824446efea8fea2a50bd8cda91bf21ef"


def h(s):
    return bytes.fromhex("".join(s.split()))


def genesis_a():
    return tv.parse_genesis(GENESIS_A.encode())


def verdict(bundle_text, genesis_text=GENESIS_A):
    try:
        g = tv.parse_genesis(genesis_text.encode())
    except tv.GenesisError as e:
        return tv.refused_verdict("genesis-file", str(e))
    return tv.verdict_for_text(g, bundle_text)


def link(v):
    return None if v["valid"] else v["link"]


def edit_bundle(**changes):
    b = json.loads(BUNDLE_A)
    for k, v in changes.items():
        b[k] = v
    return json.dumps(b)


def edit_genesis(fn):
    g = json.loads(GENESIS_A)
    fn(g)
    return json.dumps(g)


# A signer, to make test signatures (RFC 8032 §5.1.6).
def secret(seed):
    d = hashlib.sha512(seed).digest()
    a = int.from_bytes(d[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, d[32:]


def public_key(seed):
    a, _ = secret(seed)
    return tv.encode_point(tv.scalar_mult(tv.BASE, a))


def sign(seed, msg):
    a, prefix = secret(seed)
    pub = public_key(seed)
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % tv.L
    rb = tv.encode_point(tv.scalar_mult(tv.BASE, r))
    k = int.from_bytes(hashlib.sha512(rb + pub + msg).digest(), "little") % tv.L
    return rb + ((r + k * a) % tv.L).to_bytes(32, "little")


class AppendixA(unittest.TestCase):
    def test_the_bundle_verifies_with_the_stated_verdict(self):
        self.assertEqual(verdict(BUNDLE_A), VERDICT_A)

    def test_the_command_line_prints_the_stated_verdict(self):
        with tempfile.TemporaryDirectory() as d:
            gp, bp = os.path.join(d, "genesis.json"), os.path.join(d, "bundle.json")
            with open(gp, "w") as f:
                f.write(GENESIS_A)
            with open(bp, "w") as f:
                f.write(BUNDLE_A)
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp, "--genesis", gp,
                                  "--json"], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0)
            self.assertEqual(len(out.stdout.splitlines()), 1)
            self.assertEqual(json.loads(out.stdout), VERDICT_A)
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp, "--genesis", gp],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0)
            self.assertTrue(out.stdout.startswith("VALID: "))
            with open(bp, "w") as f:
                f.write(edit_bundle(chain_id="other"))
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp, "--genesis", gp,
                                  "--json"], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1)
            v = json.loads(out.stdout)
            self.assertEqual((v["valid"], v["link"], v["index"], v["field"]),
                             (False, "chain-id", None, None))
            self.assertIsInstance(v["reason"], str)
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp, "--genesis", gp],
                                 capture_output=True, text=True)
            self.assertTrue(out.stdout.startswith("INVALID: "))
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp + ".absent",
                                  "--genesis", gp, "--json"], capture_output=True, text=True)
            self.assertEqual((out.returncode, json.loads(out.stdout)["link"]), (2, "bundle-file"))
            out = subprocess.run([sys.executable, SCRIPT, "--bundle", bp, "--genesis",
                                  gp + ".absent", "--json"], capture_output=True, text=True)
            self.assertEqual((out.returncode, json.loads(out.stdout)["link"]), (2, "genesis-file"))

    def test_the_three_stated_alterations(self):
        b = json.loads(BUNDLE_A)
        b["record"]["tag"] = "invoice-0002"
        self.assertEqual(link(verdict(json.dumps(b))), "state-proof")
        self.assertEqual(link(verdict(BUNDLE_A, edit_genesis(lambda g: g.pop("accounts")))),
                         "genesis")
        self.assertEqual(link(verdict(BUNDLE_A.replace('"epoch_changes"', '"x": 1, "epoch_changes"'))),
                         "malformed")

    def test_genesis_digest_and_encoding(self):
        enc = tv.genesis_encoding(genesis_a())
        self.assertEqual(len(enc), 211)
        self.assertEqual(enc, h("""
            00000017 7472656c6c69732f67656e657369732d66696c652f7631
            0000000d 6578616d706c652d636861696e
            0000018bcfe56800
            00000001
            0000000b 76616c696461746f722d31
            8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c
            00000001
            00000008 6d656d6265722d31
            00000005 6f72672d31
            00000006 6d656d626572
            db995fe25169d141cab9bbba92baa01f9f2e1ece7df4cb2ac05190f37fcc1f9d
            0000000000010000 0000000000000fa0 0000000000400000
            00
            00000002 00000003 0000000000069780"""))
        self.assertEqual(genesis_a().digest.hex(), GENESIS_DIGEST_A)

    def test_the_genesis_digest_is_of_the_meaning_not_the_spelling(self):
        def respell(g):
            g["validators"][0]["consensus_key"] = KEY_1.upper()
            g["params"] = {"max_tx_bytes": 65536, "epoch_length_blocks": None,
                           "approval_den": 3}
            g["accounts"][0] = dict(reversed(list(g["accounts"][0].items())))
        g = tv.parse_genesis(edit_genesis(respell).encode())
        self.assertEqual(g.digest.hex(), GENESIS_DIGEST_A)
        g = tv.parse_genesis(edit_genesis(lambda g: g.update(
            params={"epoch_length_blocks": 5})).encode())
        self.assertNotEqual(g.digest.hex(), GENESIS_DIGEST_A)

    def test_anchor_record_encoding(self):
        enc = tv.anchor_record_encoding(h(KEY_41), "invoice-0001", b"\x71" * 32)
        self.assertEqual(len(enc), 82)
        self.assertEqual(enc.hex(), "0a20db995fe25169d141cab9bbba92baa01f9f2e1ece7df4cb2ac05190f37fcc1f9d120c696e766f6963652d303030311a207171717171717171717171717171717171717171717171717171717171717171")
        self.assertEqual(tv.anchor_record_encoding(b"\x01" * 32, "", b"\x02" * 32),
                         b"\x0a\x20" + b"\x01" * 32 + b"\x1a\x20" + b"\x02" * 32)

    def test_state_key_hashes(self):
        self.assertEqual(tv.sha256(b"chain/genesis").hex(),
                         "f0fc450c2a6bea178a06940431f0e041169fdcc007d95ca421be5f50eff58623")
        self.assertEqual(tv.sha256(h(GENESIS_DIGEST_A)).hex(),
                         "022cad475dbf57af04d51ec53a6324987911452d8a650729e92c84dc6add1ad3")
        self.assertEqual(tv.sha256(b"anchor/" + b"\xd0" * 32).hex(),
                         "885bc7636166d858ebdd6075c8ab698f705c8cf526e50be27e40d30d233e747e")

    def test_the_anchor_proof_fold_of_8_4(self):
        b = tv.parse_bundle(BUNDLE_A)
        leaf, siblings = b.state_proof
        self.assertEqual(len(siblings), 3)
        self.assertEqual(siblings[2], tv.PLACEHOLDER)
        key_hash = tv.sha256(b"anchor/" + b"\xd0" * 32)
        self.assertEqual([x.hex() for x in tv.jmt_fold(leaf, siblings, key_hash)], [
            "e3a215be7973282b32982f074ed98a6e2695070dfc1598bf103e388f1ba9219b",
            "722fe147684934c2986599d9695df32a15a9be58dcef503d51f98f887fcd621d",
            "a5d2b55f88de5ca3e8a7dba650634718b34b2f8c24ae87c348f34da64d9ffff2",
            ROOT_A,
        ])
        proof_bytes = h(json.loads(BUNDLE_A)["state_proof"])[3:]
        self.assertEqual(len(proof_bytes), 200)

    def test_the_genesis_proof_fold(self):
        b = tv.parse_bundle(BUNDLE_A)
        leaf, siblings = b.genesis_proof
        self.assertEqual(len(siblings), 2)
        self.assertEqual(siblings[1], tv.PLACEHOLDER)
        self.assertEqual(len(h(json.loads(BUNDLE_A)["genesis_proof"])), 3 + 135)
        fold = tv.jmt_fold(leaf, siblings, tv.sha256(b"chain/genesis"))
        self.assertEqual([x.hex() for x in fold], [
            "927b5fd566b19de04e50c671a5c9c90d9e2ecefaaa1a487cabbec60dcbfc4073",
            "a5d2b55f88de5ca3e8a7dba650634718b34b2f8c24ae87c348f34da64d9ffff2",
            ROOT_A,
        ])

    def test_the_header_of_4_4_and_its_id(self):
        raw = h(json.loads(BUNDLE_A)["headers"][0])
        self.assertEqual(len(raw), 166)
        hd = tv.decode_message(raw, tv.BLOCK_HEADER)
        self.assertEqual((hd["chain_id"], hd["epoch"], hd["round"], hd["height"], hd["author"],
                          hd["timestamp_ms"]), ("example-chain", 0, 3, 3, 0, 1700000001000))
        self.assertEqual((hd["parent_id"], hd["qc_digest"], hd["payload_digest"]),
                         (b"\x33" * 32, b"\x44" * 32, b"\x55" * 32))
        self.assertEqual(hd["state"]["height"], 2)
        self.assertEqual(hd["state"]["root"].hex(), ROOT_A)
        self.assertIsNone(hd["next_committee"])
        enc = tv.header_encoding(hd)
        self.assertEqual(len(enc), 217)
        self.assertEqual(enc, h("00000017 7472656c6c69732f626c6f636b2d6865616465722f7631"
                                "0000000d 6578616d706c652d636861696e"
                                "0000000000000000 0000000000000003 0000000000000003")
                         + b"\x33" * 32 + b"\x44" * 32 + h("00000000 0000018bcfe56be8")
                         + b"\x55" * 32 + h("0000000000000002" + ROOT_A + "00"))
        self.assertEqual(tv.header_id(hd).hex(), HEADER_ID_A)

    def test_vote_data_digest_signing_bytes_and_signature(self):
        qc = tv.decode_message(h(json.loads(BUNDLE_A)["commit_qc"]), tv.QUORUM_CERT)
        vd = qc["vote_data"]
        self.assertEqual((vd["epoch"], vd["round"], vd["height"], vd["block_id"],
                          vd["parent_id"].hex(), vd["parent_round"], vd["ends_epoch"]),
                         (0, 4, 4, b"\x11" * 32, HEADER_ID_A, 3, False))
        enc = tv.vote_data_encoding(vd)
        self.assertEqual(len(enc), 121)
        self.assertEqual(enc, h("00000014 7472656c6c69732f766f74652d646174612f7631"
                                "0000000000000000 0000000000000004 0000000000000004")
                         + b"\x11" * 32 + h(HEADER_ID_A + "0000000000000003 00"))
        digest = "c741a5be266f738b91d0853b97b5f4b7f90d9d91d2dc92e1e645e276e20c8a68"
        self.assertEqual(tv.vote_data_digest(vd).hex(), digest)
        msg = tv.signing_bytes(vd, "example-chain")
        self.assertEqual(len(msg), 130)
        self.assertEqual(msg, h("0000001c 7472656c6c69732f636f6e73656e7375732f7369676e696e672f7631"
                                "02 0000000d 6578616d706c652d636861696e"
                                "0000000000000000 0000000000000004")
                         + b"\x11" * 32 + h(digest))
        self.assertEqual(qc["signers"], b"\x01")
        sig = qc["signatures"][0]
        self.assertEqual(sig.hex(), "30b4d08266b520e4cac7a88c07d7e5ad1a3d1d8f0d3b1728c8eb864ea0167531c34e60828e9b5cfec1912a72b3da141f699e3b52dc7dccdf620fc6b6aee35e0d")
        self.assertTrue(tv.ed25519_verify(h(KEY_1), msg, sig))
        self.assertEqual(sign(b"\x01" * 32, msg), sig)

    def test_the_keys_of_the_seeds(self):
        self.assertEqual(public_key(b"\x01" * 32).hex(), KEY_1)
        self.assertEqual(public_key(b"\x41" * 32).hex(), KEY_41)


class Protobuf(unittest.TestCase):
    HEADER = h(json.loads(BUNDLE_A)["headers"][0])

    def refused(self, raw, schema=tv.BLOCK_HEADER):
        with self.assertRaises(tv.ProtoError):
            tv.decode_message(raw, schema)

    def test_the_refused_encodings_of_4_4(self):
        hd = self.HEADER
        tv.decode_message(hd, tv.BLOCK_HEADER)
        i = hd.index(b"\x18\x03")
        self.refused(hd[:i] + b"\x10\x00" + hd[i:])  # epoch 0 written out
        self.refused(hd[:i] + b"\x18\x83\x00" + hd[i + 2:])  # round, non-minimal
        self.refused(hd + b"\x60\x01")  # an extra field
        j = hd.index(b"\x52\x24")
        self.refused(hd + hd[j:])  # state twice
        self.refused(hd[:i] + hd[i + 2:i + 4] + hd[i:i + 2] + hd[i + 4:])  # out of order
        vd = tv.encode_varint  # noqa: F841
        qc = h(json.loads(BUNDLE_A)["commit_qc"])
        vote = qc[2:2 + qc[1]]
        tv.decode_message(vote, tv.VOTE_DATA)
        self.refused(vote + b"\x38\x02", tv.VOTE_DATA)
        tv.decode_message(vote + b"\x38\x01", tv.VOTE_DATA)

    def test_canonical_rules(self):
        sc = b"\x08\x02\x12\x20" + b"\x00" * 32
        self.assertEqual(tv.decode_message(sc, tv.STATE_COMMITMENT)["height"], 2)
        self.assertEqual(tv.decode_message(sc[2:], tv.STATE_COMMITMENT)["height"], 0)
        self.refused(sc[:-1], tv.STATE_COMMITMENT)  # length past the end
        self.refused(b"\x08\x02\x12\x1f" + b"\x00" * 31, tv.STATE_COMMITMENT)  # root not 32
        self.refused(sc[2:], tv.BLOCK_HEADER)  # no parent_id etc.
        self.refused(b"\x88\x01\x02" + sc[2:], tv.STATE_COMMITMENT)  # a two-byte key
        self.refused(b"\x09" + sc[2:], tv.STATE_COMMITMENT)  # another wire type
        self.refused(b"\x00" + sc, tv.STATE_COMMITMENT)  # field number 0
        big = b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" + sc[2:]
        self.assertEqual(tv.decode_message(big, tv.STATE_COMMITMENT)["height"], 2**64 - 1)
        self.refused(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02" + sc[2:], tv.STATE_COMMITMENT)
        self.refused(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x00" + sc[2:],
                     tv.STATE_COMMITMENT)
        # a present but empty nested message is decoded (and here refused by its own rules)
        self.refused(b"\x0a\x00", tv.QUORUM_CERT)

    def test_committee_rules(self):
        k1 = h(KEY_1)
        k2 = h(KEY_41)
        ok = tv.decode_message(b"\x0a\x20" + k1 + b"\x0a\x20" + k2, tv.COMMITTEE)
        self.assertEqual(ok["members"], [k1, k2])
        self.refused(b"\x0a\x20" + k1 + b"\x0a\x20" + k1, tv.COMMITTEE)  # twice
        self.refused(b"", tv.COMMITTEE)  # no member
        self.refused(b"\x0a\x20" + b"\x00" * 32, tv.COMMITTEE)  # weak
        self.refused(b"\x0a\x1f" + k1[:31], tv.COMMITTEE)

    def test_borsh_layout(self):
        leaf = b"\x01" + b"\x00" * 64
        self.assertEqual(tv.decode_jmt_proof(leaf + b"\x00\x00\x00\x00")[1], [])
        with self.assertRaises(tv.ProtoError):
            tv.decode_jmt_proof(leaf + b"\x00\x00\x00\x00\x00")  # trailing
        with self.assertRaises(tv.ProtoError):
            tv.decode_jmt_proof(b"\x02" + b"\x00" * 68)  # leaf tag
        with self.assertRaises(tv.ProtoError):
            tv.decode_jmt_proof(leaf + b"\x01\x00\x00\x00\x03")  # sibling tag
        with self.assertRaises(tv.ProtoError):
            tv.decode_jmt_proof(leaf + b"\x02\x00\x00\x00\x00")  # short
        self.assertIsNone(tv.decode_jmt_proof(b"\x00\x01\x00\x00\x00\x00")[0])


class Keys(unittest.TestCase):
    def test_the_strong_key_table_of_3_4(self):
        table = [
            (KEY_1, True),
            ("0100000000000000000000000000000000000000000000000000000000000000", False),
            ("0000000000000000000000000000000000000000000000000000000000000000", False),
            ("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", False),
            ("0100000000000000000000000000000000000000000000000000000000000080", False),
            ("63771c228bf60e6a02ad24d2c345a28d3598f640e26bede40c8b77fe4bf090a3", False),
        ]
        for key, strong in table:
            self.assertEqual(tv.is_strong_key(h(key)), strong, key)
        # the last one is the first plus (0, -1)
        plus = tv.point_add(tv.decode_point(h(KEY_1), True), tv.decode_point(h(table[3][0]), True))
        self.assertEqual(tv.encode_point(plus).hex(), table[5][0])

    def test_constants_of_appendix_b(self):
        self.assertEqual(tv.D, 37095705934669439343138083508754565189542113879843219016388785533085940283555)
        self.assertEqual(tv.encode_point(tv.BASE).hex(),
                         "5866666666666666666666666666666666666666666666666666666666666666")
        self.assertEqual(tv.BASE[0] % 2, 0)
        self.assertTrue(tv.is_identity(tv.scalar_mult(tv.BASE, tv.L)))
        self.assertEqual(tv.PLACEHOLDER.hex(),
                         "5350415253455f4d45524b4c455f504c414345484f4c4445525f484153485f5f")


class Ed25519(unittest.TestCase):
    def test_rfc8032_vectors(self):
        # RFC 8032 §7.1, tests 1 to 3
        for sk, pk, msg, sig in [
            ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
             "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
             "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
             "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
            ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
             "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
             "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
        ]:
            self.assertEqual(public_key(h(sk)).hex(), pk)
            self.assertEqual(sign(h(sk), h(msg)).hex(), sig)
            self.assertTrue(tv.ed25519_verify(h(pk), h(msg), h(sig)))
            self.assertFalse(tv.ed25519_verify(h(pk), h(msg) + b"x", h(sig)))
            bad = bytearray(h(sig))
            bad[0] ^= 1
            self.assertFalse(tv.ed25519_verify(h(pk), h(msg), bytes(bad)))

    def test_zip215_accepts_a_small_order_component_in_r(self):
        seed = b"\x07" * 32
        a, _ = secret(seed)
        pub = public_key(seed)
        msg = b"a message"
        r = 12345
        t = tv.decode_point(h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), True)
        rb = tv.encode_point(tv.point_add(tv.scalar_mult(tv.BASE, r), t))
        k = int.from_bytes(hashlib.sha512(rb + pub + msg).digest(), "little") % tv.L
        sig = rb + ((r + k * a) % tv.L).to_bytes(32, "little")
        self.assertTrue(tv.ed25519_verify(pub, msg, sig))
        # and the cofactorless equation would refuse it
        s = int.from_bytes(sig[32:], "little")
        lhs = tv.scalar_mult(tv.BASE, s)
        rhs = tv.point_add(tv.decode_point(rb, False), tv.scalar_mult(tv.decode_point(pub, True), k))
        self.assertNotEqual(tv.encode_point(lhs), tv.encode_point(rhs))

    def test_zip215_accepts_a_non_canonical_r(self):
        seed = b"\x09" * 32
        a, _ = secret(seed)
        pub = public_key(seed)
        msg = b"another message"
        # R = the identity spelt with y = p + 1 (not canonical), so r = 0
        rb = (tv.P + 1).to_bytes(32, "little")
        self.assertIsNone(tv.decode_point(rb, True))
        self.assertTrue(tv.is_identity(tv.decode_point(rb, False)))
        k = int.from_bytes(hashlib.sha512(rb + pub + msg).digest(), "little") % tv.L
        sig = rb + (k * a % tv.L).to_bytes(32, "little")
        self.assertTrue(tv.ed25519_verify(pub, msg, sig))
        # x = 0 with the sign bit set is accepted too (the identity again)
        rb2 = bytes(rb[:31]) + bytes([rb[31] | 0x80])
        self.assertTrue(tv.is_identity(tv.decode_point(rb2, False)))
        k = int.from_bytes(hashlib.sha512(rb2 + pub + msg).digest(), "little") % tv.L
        self.assertTrue(tv.ed25519_verify(pub, msg, rb2 + (k * a % tv.L).to_bytes(32, "little")))

    def test_zip215_requires_a_canonical_s(self):
        seed = b"\x01" * 32
        msg = b"m"
        sig = sign(seed, msg)
        s = int.from_bytes(sig[32:], "little")
        pub = public_key(seed)
        self.assertTrue(tv.ed25519_verify(pub, msg, sig))
        self.assertFalse(tv.ed25519_verify(pub, msg, sig[:32] + (s + tv.L).to_bytes(32, "little")))

    def test_the_table_path_and_the_plain_path_agree(self):
        seed = b"\x05" * 32
        pub = public_key(seed)
        for i in range(6):  # the key's table is built on its third use
            msg = b"msg %d" % i
            sig = sign(seed, msg)
            self.assertTrue(tv.ed25519_verify(pub, msg, sig))
            self.assertFalse(tv.ed25519_verify(pub, msg + b"!", sig))
        self.assertIn(pub, tv._neg_tables)


class QuorumRules(unittest.TestCase):
    def test_quorum_examples_of_6_2(self):
        self.assertEqual([tv.quorum(n) for n in (1, 4, 7, 10)], [1, 3, 5, 7])

    def test_bitmap_example_of_6_3(self):
        self.assertEqual(tv.signer_indices(h("2f03")), [0, 1, 2, 3, 5, 8, 9])

    def test_verify_qc_rules(self):
        seeds = [bytes([i + 1]) * 32 for i in range(4)]
        committee = [public_key(s) for s in seeds]
        vd = {"epoch": 0, "round": 4, "height": 4, "block_id": b"\x11" * 32,
              "parent_id": b"\x22" * 32, "parent_round": 3, "ends_epoch": False}
        msg = tv.signing_bytes(vd, "c")
        sigs = [sign(s, msg) for s in seeds]
        qc = {"vote_data": vd, "signers": b"\x0b", "signatures": [sigs[0], sigs[1], sigs[3]]}
        self.assertIsNone(tv.verify_qc(qc, "c", committee))
        self.assertIsNotNone(tv.verify_qc(qc, "d", committee))  # another chain
        self.assertIsNotNone(tv.verify_qc(dict(qc, signers=b"\x0b\x00"), "c", committee))
        self.assertIsNotNone(tv.verify_qc(dict(qc, signers=b"\x1b"), "c", committee))
        self.assertIsNotNone(tv.verify_qc(dict(qc, signers=b"\x03",
                                                signatures=sigs[:2]), "c", committee))
        self.assertIsNotNone(tv.verify_qc(dict(qc, signatures=[sigs[0], sigs[3], sigs[1]]),
                                          "c", committee))


class StrictJSON(unittest.TestCase):
    def malformed(self, text):
        self.assertEqual(link(verdict(text)), "malformed", text[:80])

    def test_json_rules_of_2_1(self):
        self.assertTrue(verdict(BUNDLE_A)["valid"])
        self.assertTrue(verdict(" \r\n\t" + BUNDLE_A + " \n")["valid"])
        self.malformed("\ufeff" + BUNDLE_A)
        self.malformed(BUNDLE_A + "x")
        self.malformed(BUNDLE_A + "{}")
        self.malformed(BUNDLE_A.replace('"epoch_changes": []', '"epoch_changes": [], "epoch_changes": []'))
        self.malformed(BUNDLE_A.replace('"epoch_changes": []', '"epoch_changes": null'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": 2.0'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": 2e0'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": -0'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": 02'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": NaN'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": 18446744073709551616'))
        self.malformed(BUNDLE_A.replace('"height": 2', '"height": "2"'))
        self.malformed(BUNDLE_A.replace('invoice-0001', 'invoice\\ud800'))
        self.malformed(BUNDLE_A.replace('invoice-0001', 'invoice\\udc00\\ud800'))
        self.malformed(BUNDLE_A.replace('invoice-0001', 'invoice\x01'))
        self.malformed(BUNDLE_A.replace('"d0d0', '"D0d0'))
        self.malformed(BUNDLE_A.replace('"d0d0', '"d0d'))
        self.malformed(BUNDLE_A.replace('"format": "trellis.anchor-bundle/v2"',
                                        '"format": "trellis.anchor-bundle/v1"'))
        self.malformed("[]")
        self.malformed("")
        self.malformed("[" * 100000)
        # an escape is decoded: the same bundle, the tag spelt with escapes
        v = verdict(BUNDLE_A.replace('invoice-0001', '\\u0069nvoice-0001'))
        self.assertTrue(v["valid"])
        v = verdict(BUNDLE_A.replace('"height": 2', '"height": 18446744073709551615'))
        self.assertEqual(link(v), "state-not-committed")  # the height is bound by headers[0]

    def test_a_tag_with_a_surrogate_pair_escape_is_decoded(self):
        v = verdict(BUNDLE_A.replace('invoice-0001', '\\ud83d\\ude00'))
        self.assertEqual(link(v), "state-proof")

    def test_fields_are_reported(self):
        v = verdict(BUNDLE_A.replace('"headers": [\n    "0a0d', '"headers": [\n    "0a0e'))
        self.assertEqual((v["link"], v["field"]), ("malformed", "headers[0]"))
        v = verdict(edit_bundle(x=1))
        self.assertEqual((v["link"], v["field"]), ("malformed", None))

    def test_a_bundle_that_is_not_utf8(self):
        with tempfile.TemporaryDirectory() as d:
            gp, bp = os.path.join(d, "g.json"), os.path.join(d, "b.json")
            with open(gp, "w") as f:
                f.write(GENESIS_A)
            with open(bp, "wb") as f:
                f.write(BUNDLE_A.replace("invoice-0001", "invoice-000\xff").encode("latin-1"))
            self.assertEqual(tv.verify_files(bp, gp)["link"], "bundle-file")


class GenesisRules(unittest.TestCase):
    def unusable(self, fn=None, text=None):
        if text is None:
            text = edit_genesis(fn)
        with self.assertRaises(tv.GenesisError, msg=text[:200]):
            tv.parse_genesis(text.encode())

    def usable(self, fn):
        return tv.parse_genesis(edit_genesis(fn).encode())

    def test_rules_of_3_1_and_3_2(self):
        self.unusable(lambda g: g.update(chain_id=""))
        self.unusable(lambda g: g.update(chain_id="a" * 65))
        self.usable(lambda g: g.update(chain_id="\u00e9" * 64))
        self.unusable(lambda g: g.update(chain_id="a b"))
        self.unusable(lambda g: g.update(chain_id="a\u3000b"))
        self.unusable(lambda g: g.update(chain_id="a\u0085b"))
        self.unusable(lambda g: g.update(chain_id="a\u007fb"))
        self.usable(lambda g: g.update(chain_id="a\u200bb"))  # not White_Space
        self.unusable(lambda g: g.update(genesis_time_ms=-1))
        self.unusable(lambda g: g.update(validators=[]))
        self.unusable(lambda g: g["validators"].append(dict(g["validators"][0], name="v2")))
        self.unusable(lambda g: g["validators"][0].update(name=" \u2028"))
        self.unusable(lambda g: g["validators"][0].update(
            consensus_key="0100000000000000000000000000000000000000000000000000000000000000"))
        self.unusable(lambda g: g["validators"][0].update(x=1))
        self.unusable(lambda g: g.update(accounts=None))
        self.unusable(lambda g: g.update(params=None))
        self.usable(lambda g: g.update(accounts=[]))
        self.unusable(lambda g: g["accounts"][0].update(role="Member"))
        self.unusable(lambda g: g["accounts"][0].update(org="org 1"))
        self.unusable(lambda g: g["accounts"][0].update(org=""))
        self.unusable(lambda g: g["accounts"][0].update(org="o" * 65))
        self.unusable(lambda g: g["accounts"][0].update(name=""))
        self.unusable(lambda g: g["accounts"].append(dict(g["accounts"][0], name="m2")))
        self.unusable(lambda g: g["accounts"][0].update(
            public_key="63771c228bf60e6a02ad24d2c345a28d3598f640e26bede40c8b77fe4bf090a3"))
        # an account key may equal a validator key
        self.usable(lambda g: g["accounts"][0].update(public_key=KEY_1))
        self.unusable(lambda g: g.update(params={"approval_num": 1, "approval_den": 2}))
        self.unusable(lambda g: g.update(params={"approval_num": 4}))
        self.unusable(lambda g: g.update(params={"approval_den": 1001, "approval_num": 1000}))
        self.unusable(lambda g: g.update(params={"approval_den": 0, "approval_num": 0}))
        self.unusable(lambda g: g.update(params={"approval_num": 2**32}))
        self.usable(lambda g: g.update(params={"approval_num": 1, "approval_den": 1}))
        self.unusable(lambda g: g.update(params={"max_tx_bytes": 0}))
        self.unusable(lambda g: g.update(params={"max_tx_bytes": 4194305}))
        self.unusable(lambda g: g.update(params={"epoch_length_blocks": 0}))
        self.unusable(lambda g: g.update(params={"proposal_ttl_blocks": 100000001}))
        self.unusable(lambda g: g.update(params={"other": 1}))
        self.unusable(lambda g: g.update(x=None))
        self.unusable(text=GENESIS_A.replace('"chain_id"', '"chain_id": "x", "chain_id"'))
        self.unusable(text="\ufeff" + GENESIS_A)

    def test_an_unusable_genesis_comes_first(self):
        with tempfile.TemporaryDirectory() as d:
            gp = os.path.join(d, "g.json")
            with open(gp, "w") as f:
                f.write("{}")
            v = tv.verify_files(os.path.join(d, "absent.json"), gp)
            self.assertEqual((v["link"], tv.exit_code(v)), ("genesis-file", 2))


# Appendix A's genesis file with node orgs and two shards (§3.1-§3.3). Its digest, and that of
# the same file without `shards`, are the values `trellis verify` (services/types/src/genesis.rs)
# reports for it; the keys are those of the seeds 1, 2, 3, 4 and 5 (0x01×32, ...).
KEY_2 = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
KEY_3 = "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1"
KEY_4 = "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c"
KEY_5 = "6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf1"
GENESIS_SHARDS = """{
  "chain_id": "example-chain",
  "genesis_time_ms": 1700000000000,
  "validators": [
    { "name": "validator-1", "consensus_key": "%(k1)s", "org": "org-1" },
    { "name": "validator-2", "consensus_key": "%(k2)s" }
  ],
  "accounts": [
    { "name": "member-1", "org": "org-1", "role": "member", "public_key": "%(k41)s" },
    { "name": "member-2", "org": "org-2", "role": "member", "public_key": "%(k3)s" },
    { "name": "watch", "org": "reg.x", "role": "regulator", "public_key": "%(k4)s" }
  ],
  "shards": [
    { "shard_id": "shard-a", "members": ["org-1", "org-2"],
      "validators": [ { "name": "s1", "consensus_key": "%(k5)s", "org": "org-1" },
                      { "name": "s2", "consensus_key": "%(k1)s", "org": "org-2" } ] },
    { "shard_id": "shard_b.2", "members": ["org-2"],
      "validators": [ { "name": "s3", "consensus_key": "%(k5)s", "org": "org-2" } ] }
  ],
  "params": { "epoch_length_blocks": 100 }
}
""" % dict(k1=KEY_1, k2=KEY_2, k3=KEY_3, k4=KEY_4, k5=KEY_5, k41=KEY_41)
GENESIS_SHARDS_DIGEST = "11adc9ac558a1070a25ffbfae9cf0a1ea76d8c9122bbe46e7cc96fc804d3f953"
GENESIS_ORGS_ONLY_DIGEST = "dbf3d874288a50f1752be8d25a439754826e4ba6374609709ac23b30e0c60d6f"
WEAK_KEY = "63771c228bf60e6a02ad24d2c345a28d3598f640e26bede40c8b77fe4bf090a3"


def edit_shards(fn):
    g = json.loads(GENESIS_SHARDS)
    fn(g)
    return json.dumps(g)


def shard(i):
    return lambda g: g["shards"][i]


def shard_val(i, j):
    return lambda g: g["shards"][i]["validators"][j]


# Each mistake and the field the reference names for it (`trellis verify` on the same file).
SHARD_MISTAKES = [
    (lambda g: shard(0)(g).update(shard_id="example-chain"), "shards[0].shard_id"),
    (lambda g: shard(0)(g).update(shard_id="s c f"), "shards[0].shard_id"),
    (lambda g: shard(0)(g).update(shard_id=""), "shards[0].shard_id"),
    (lambda g: shard(0)(g).update(shard_id="s" * 65), "shards[0].shard_id"),
    (lambda g: shard(0)(g).update(shard_id="sh\u00e9"), "shards[0].shard_id"),
    (lambda g: shard(1)(g).update(shard_id="shard-a"), "shards[1].shard_id"),
    (lambda g: shard(1)(g).update(members=[]), "shards[1].members"),
    (lambda g: shard(0)(g)["members"].append("reg.x"), "shards[0].members[2]"),
    (lambda g: shard(0)(g)["members"].insert(0, "org-9"), "shards[0].members[0]"),
    (lambda g: shard(1)(g)["members"].append("org-2"), "shards[1].members[1]"),
    (lambda g: shard(1)(g).update(validators=[]), "shards[1].validators"),
    (lambda g: shard_val(0, 1)(g).pop("org"), "shards[0].validators[1].org"),
    (lambda g: shard_val(1, 0)(g).update(org="org-1"), "shards[1].validators[0].org"),
    (lambda g: shard_val(1, 0)(g).update(org="no such"), "shards[1].validators[0].org"),
    (lambda g: shard_val(0, 0)(g).update(name=" \t"), "shards[0].validators[0].name"),
    (lambda g: shard_val(0, 0)(g).update(consensus_key=WEAK_KEY),
     "shards[0].validators[0].consensus_key"),
    (lambda g: shard_val(0, 0)(g).update(consensus_key="ab" * 31),
     "shards[0].validators[0].consensus_key"),
    (lambda g: shard_val(0, 1)(g).update(consensus_key=KEY_5),
     "shards[0].validators[1].consensus_key"),
    (lambda g: g["validators"][1].update(org="no spaces"), "validators[1].org"),
    (lambda g: g["validators"][0].update(org=""), "validators[0].org"),
    (lambda g: g["validators"][0].update(org="o" * 65), "validators[0].org"),
]

# Refused by the reference while reading the JSON (an unknown, missing or mistyped member).
SHARD_STRUCTURE_MISTAKES = [
    lambda g: shard(0)(g).update(extra=1),
    lambda g: shard_val(0, 0)(g).update(extra=1),
    lambda g: g["validators"][0].update(orgs="org-1"),
    lambda g: shard(0)(g).pop("members"),
    lambda g: shard(0)(g).pop("validators"),
    lambda g: shard(0)(g).pop("shard_id"),
    lambda g: g.update(shards=None),
    lambda g: g.update(shards={}),
    lambda g: g["shards"].append("x"),
    lambda g: shard(0)(g).update(members=[1]),
    lambda g: shard(0)(g).update(members="org-1"),
    lambda g: shard(0)(g).update(shard_id=1),
    lambda g: g["validators"][0].update(org=1),
    lambda g: shard_val(0, 0)(g).update(org=None),
    # §3.1 refuses null everywhere but params.epoch_length_blocks. (The reference reads
    # `"org": null` on a beacon validator as an absent org.)
    lambda g: g["validators"][0].update(org=None),
]


class GenesisShards(unittest.TestCase):
    def field_of(self, text):
        with self.assertRaises(tv.GenesisError, msg=text[:300]) as cm:
            tv.parse_genesis(text.encode())
        return str(cm.exception).split(" ", 1)[0]

    def test_node_orgs_and_shards_parse_with_the_reference_digest(self):
        g = tv.parse_genesis(GENESIS_SHARDS.encode())
        self.assertEqual(g.committee, [h(KEY_1), h(KEY_2)])
        self.assertEqual([org for _, _, org in g.validators], ["org-1", None])
        self.assertEqual(g.shards, [
            ("shard-a", ["org-1", "org-2"], [("s1", h(KEY_5), "org-1"), ("s2", h(KEY_1), "org-2")]),
            ("shard_b.2", ["org-2"], [("s3", h(KEY_5), "org-2")]),
        ])
        self.assertEqual(g.digest.hex(), GENESIS_SHARDS_DIGEST)
        orgs_only = tv.parse_genesis(edit_shards(lambda g: g.pop("shards")).encode())
        self.assertEqual(orgs_only.digest.hex(), GENESIS_ORGS_ONLY_DIGEST)
        # the meaning, not the spelling: hex case and member order
        def respell(g):
            sv = shard_val(0, 0)(g)
            sv["consensus_key"] = sv["consensus_key"].upper()
            g["shards"][1] = dict(reversed(list(g["shards"][1].items())))
        self.assertEqual(tv.parse_genesis(edit_shards(respell).encode()).digest.hex(),
                         GENESIS_SHARDS_DIGEST)

    def test_the_extension_of_the_encoding(self):
        g = tv.parse_genesis(GENESIS_SHARDS.encode())
        v1 = tv.parse_genesis(edit_shards(lambda g: (
            g.pop("shards"), g["validators"][0].pop("org"))).encode())
        enc, enc_v1 = tv.genesis_encoding(g), tv.genesis_encoding(v1)
        self.assertTrue(enc.startswith(enc_v1))
        def b(s):
            return len(s).to_bytes(4, "big") + s.encode()

        def n(v):
            return v.to_bytes(4, "big")
        self.assertEqual(enc[len(enc_v1):], b"".join([
            b"\x01", b("org-1"), b(""),
            n(2),
            b("shard-a"), n(2), b("org-1"), b("org-2"),
            n(2), b("s1"), h(KEY_5), b("org-1"), b("s2"), h(KEY_1), b("org-2"),
            b("shard_b.2"), n(1), b("org-2"),
            n(1), b("s3"), h(KEY_5), b("org-2"),
        ]))

    def test_a_version_1_file_keeps_its_digest(self):
        self.assertEqual(genesis_a().digest.hex(), GENESIS_DIGEST_A)
        self.assertEqual(genesis_a().shards, [])
        # an empty `shards` is the default: still the version-1 encoding
        g = tv.parse_genesis(edit_genesis(lambda g: g.update(shards=[])).encode())
        self.assertEqual(tv.genesis_encoding(g), tv.genesis_encoding(genesis_a()))
        self.assertEqual(g.digest.hex(), GENESIS_DIGEST_A)
        # a node org alone extends it
        g = tv.parse_genesis(
            edit_genesis(lambda g: g["validators"][0].update(org="org-1")).encode())
        self.assertEqual(tv.genesis_encoding(g),
                         tv.genesis_encoding(genesis_a()) + b"\x01" + h("00000005") + b"org-1"
                         + h("00000000"))
        # and Appendix A's bundle, anchored under the version-1 digest, still verifies
        self.assertEqual(verdict(BUNDLE_A, edit_genesis(lambda g: g.update(shards=[]))), VERDICT_A)
        self.assertEqual(link(verdict(BUNDLE_A, GENESIS_SHARDS)), "genesis")

    def test_each_shard_mistake_is_refused_naming_its_field(self):
        for fn, want in SHARD_MISTAKES:
            self.assertEqual(self.field_of(edit_shards(fn)), want)

    def test_unknown_missing_and_mistyped_members_are_refused(self):
        for fn in SHARD_STRUCTURE_MISTAKES:
            text = edit_shards(fn)
            with self.assertRaises(tv.GenesisError, msg=text[:300]):
                tv.parse_genesis(text.encode())

    def test_what_the_rules_allow(self):
        # a shard key may repeat a beacon validator's or another shard's (GENESIS_SHARDS does
        # both); an org may be a member of several shards; the beacon's nodes need no org
        def usable(fn):
            return tv.parse_genesis(edit_shards(fn).encode())
        usable(lambda g: [v.pop("org", None) for v in g["validators"]])
        usable(lambda g: g["validators"][1].update(org="any-org"))
        id64 = "A.b_c-9" * 9 + "x"
        usable(lambda g: shard(1)(g).update(shard_id=id64))
        self.assertEqual(self.field_of(edit_shards(
            lambda g: shard(1)(g).update(shard_id=id64 + "y"))), "shards[1].shard_id")
        # at most 1024 validators in a shard
        many = [{"name": "v", "consensus_key": KEY_5, "org": "org-1"}] * 1025
        self.assertEqual(self.field_of(edit_shards(lambda g: shard(0)(g).update(validators=many))),
                         "shards[0].validators")


class Batch(unittest.TestCase):
    def test_batch_answers_one_line_per_line(self):
        with tempfile.TemporaryDirectory() as d:
            gp = os.path.join(d, "genesis.json")
            with open(gp, "w") as f:
                f.write(GENESIS_A)
            lines = [json.dumps({"genesis": gp, "bundle": t}) for t in
                     (BUNDLE_A, edit_bundle(chain_id="x"), BUNDLE_A.replace("invoice", "Invoice"))]
            out = io.StringIO()
            tv.run_batch(io.StringIO("\n".join(lines) + "\n"), out)
            answers = [json.loads(x) for x in out.getvalue().splitlines()]
            self.assertEqual(answers[0], VERDICT_A)
            self.assertEqual([link(a) for a in answers], [None, "chain-id", "state-proof"])


class Vectors(unittest.TestCase):
    def test_the_vectors_command(self):
        if not os.path.exists(VECTORS):
            self.skipTest("no testdata/proofs/vectors.json yet")
        out = subprocess.run([sys.executable, SCRIPT, "--vectors", VECTORS],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(" 0 failed", out.stdout.splitlines()[-1])

    def test_every_vector_gets_its_expected_verdict(self):
        if not os.path.exists(VECTORS):
            self.skipTest("no testdata/proofs/vectors.json yet")
        with open(VECTORS, encoding="utf-8") as f:
            manifest = json.load(f)
        self.assertEqual(manifest["format"], "trellis.proof-vectors/v1")
        base = os.path.dirname(VECTORS)
        self.assertTrue(manifest["vectors"])
        for vec in manifest["vectors"]:
            with self.subTest(vector=vec["name"]):
                v = tv.verify_files(os.path.join(base, vec["bundle"]),
                                    os.path.join(base, vec["genesis"]))
                self.assertEqual(tv.essence(v), vec["expect"], v.get("reason"))
                expected_code = 0 if vec["expect"]["valid"] else (
                    2 if vec["expect"]["link"] in ("genesis-file", "bundle-file") else 1)
                self.assertEqual(tv.exit_code(v), expected_code)


if __name__ == "__main__":
    unittest.main()


# ---------------------------------------------------------------------------------------------
# A synthetic chain with epoch changes, built with the document's encodings, to run the links
# Appendix A does not reach (several headers, a 4-validator committee, an epoch change).


def hid(x):
    """A header's id, computed afresh (tv.header_id caches it in the dict, and the tests copy
    dicts)."""
    return tv.sha256(tv.header_encoding(x))


def pb_varint(key, v):
    return bytes([key]) + tv.encode_varint(v) if v else b""


def pb_len(key, b, always=False):
    return bytes([key]) + tv.encode_varint(len(b)) + b if (b or always) else b""


def pb_header(hd):
    out = pb_len(0x0A, hd["chain_id"].encode()) + pb_varint(0x10, hd["epoch"])
    out += pb_varint(0x18, hd["round"]) + pb_varint(0x20, hd["height"])
    out += pb_len(0x2A, hd["parent_id"]) + pb_len(0x32, hd["qc_digest"])
    out += pb_varint(0x38, hd["author"]) + pb_varint(0x40, hd["timestamp_ms"])
    out += pb_len(0x4A, hd["payload_digest"])
    st = pb_varint(0x08, hd["state"]["height"]) + pb_len(0x12, hd["state"]["root"])
    out += pb_len(0x52, st, always=True)
    if hd["next_committee"] is not None:
        out += pb_len(0x5A, b"".join(pb_len(0x0A, m) for m in hd["next_committee"]["members"]),
                      always=True)
    return out


def pb_vote_data(vd):
    return (pb_varint(0x08, vd["epoch"]) + pb_varint(0x10, vd["round"])
            + pb_varint(0x18, vd["height"]) + pb_len(0x22, vd["block_id"])
            + pb_len(0x2A, vd["parent_id"]) + pb_varint(0x30, vd["parent_round"])
            + pb_varint(0x38, 1 if vd["ends_epoch"] else 0))


def pb_qc(qc):
    return (pb_len(0x0A, pb_vote_data(qc["vote_data"]), always=True) + pb_len(0x12, qc["signers"])
            + b"".join(pb_len(0x1A, s, always=True) for s in qc["signatures"]))


def pb_epoch_change(p):
    return (pb_len(0x0A, pb_header(p["ending"]), always=True)
            + b"".join(pb_len(0x12, pb_header(s), always=True) for s in p["suffix"])
            + pb_len(0x1A, pb_qc(p["commit_qc"]), always=True))


def bit(key_hash, depth):
    return (key_hash[depth // 8] >> (7 - depth % 8)) & 1


def jmt_node(leaves, depth):
    """(hash, borsh node) of the subtree holding `leaves` [(key_hash, value_hash)]."""
    if not leaves:
        return tv.PLACEHOLDER, b"\x00"
    if len(leaves) == 1:
        kh, vh = leaves[0]
        return tv.sha256(tv.JMT_LEAF + kh + vh), b"\x02" + kh + vh
    left = [x for x in leaves if not bit(x[0], depth)]
    right = [x for x in leaves if bit(x[0], depth)]
    lh, rh = jmt_node(left, depth + 1)[0], jmt_node(right, depth + 1)[0]
    return tv.sha256(tv.JMT_INTERNAL + lh + rh), b"\x01" + lh + rh


def jmt_root_and_proof(state, key):
    """The root of `state` {key: value} and the StateProof protobuf for `key`."""
    leaves = [(tv.sha256(k), tv.sha256(v)) for k, v in state.items()]
    kh = tv.sha256(key)
    siblings = []
    group, depth = leaves, 0
    while len(group) > 1:
        same = [x for x in group if bit(x[0], depth) == bit(kh, depth)]
        other = [x for x in group if bit(x[0], depth) != bit(kh, depth)]
        siblings.append(jmt_node(other, depth + 1)[1])
        group, depth = same, depth + 1
    siblings.reverse()
    proof = b"\x01" + kh + tv.sha256(state[key]) + len(siblings).to_bytes(4, "little")
    proof += b"".join(siblings)
    return jmt_node(leaves, 0)[0], pb_len(0x0A, proof)


def make_qc(chain_id, vd, seeds, who):
    msg = tv.signing_bytes(vd, chain_id)
    bitmap = bytearray((len(seeds) + 7) // 8)
    for i in who:
        bitmap[i // 8] |= 1 << (i % 8)
    return {"vote_data": vd, "signers": bytes(bitmap), "signatures": [sign(seeds[i], msg) for i in who]}


def header(chain_id, epoch, rnd, height, parent, state_height, root, committee=None):
    return {"chain_id": chain_id, "epoch": epoch, "round": rnd, "height": height,
            "parent_id": parent, "qc_digest": b"\x44" * 32, "author": rnd % 4,
            "timestamp_ms": 1700000000000 + height, "payload_digest": b"\x55" * 32,
            "state": {"height": state_height, "root": root},
            "next_committee": None if committee is None else {"members": committee}}


def synthetic_chain():
    """A genesis file (text) and a valid bundle (a dict) whose certificate is of epoch 1."""
    chain = "synthetic-chain"
    seeds0 = [bytes([i]) * 32 for i in range(1, 5)]
    seeds1 = [bytes([i]) * 32 for i in range(5, 9)]
    g = {"chain_id": chain, "genesis_time_ms": 1700000000000,
         "validators": [{"name": "v%d" % i, "consensus_key": public_key(s).hex()}
                        for i, s in enumerate(seeds0)],
         "accounts": [{"name": "m", "org": "org", "role": "member",
                       "public_key": public_key(b"\x41" * 32).hex()}],
         "params": {"epoch_length_blocks": 10}}
    gtext = json.dumps(g, indent=1)
    gdigest = tv.parse_genesis(gtext.encode()).digest
    digest = b"\xd1" * 32
    sender, tag, tx = public_key(b"\x41" * 32), "t\u00e9st", b"\x72" * 32
    state = {b"chain/genesis": gdigest,
             b"anchor/" + digest: tv.anchor_record_encoding(sender, tag, tx),
             b"anchor/" + b"\x01" * 32: b"x", b"anchor/" + b"\x02" * 32: b"y"}
    root, state_proof = jmt_root_and_proof(state, b"anchor/" + digest)
    root2, genesis_proof = jmt_root_and_proof(state, b"chain/genesis")
    assert root == root2
    # epoch 0 ends at height 10 (round 12); one suffix header; a certificate of round 14
    ending = header(chain, 0, 12, 10, b"\x66" * 32, 9, b"\x77" * 32,
                    [public_key(s) for s in seeds1])
    suffix = header(chain, 0, 13, 11, hid(ending), 10, b"\x78" * 32)
    vd0 = {"epoch": 0, "round": 14, "height": 12, "block_id": b"\x99" * 32,
           "parent_id": hid(suffix), "parent_round": 13, "ends_epoch": False}
    ec = {"ending": ending, "suffix": [suffix], "commit_qc": make_qc(chain, vd0, seeds0, [0, 2, 3])}
    # epoch 1: headers at heights 20, 21, 22, the state (height 19) in the first
    h0 = header(chain, 1, 3, 20, b"\x88" * 32, 19, root)
    h1 = header(chain, 1, 4, 21, hid(h0), 20, b"\x79" * 32)
    h2 = header(chain, 1, 6, 22, hid(h1), 21, b"\x7a" * 32)
    vd = {"epoch": 1, "round": 7, "height": 23, "block_id": b"\xaa" * 32,
          "parent_id": hid(h2), "parent_round": 6, "ends_epoch": False}
    qc = make_qc(chain, vd, seeds1, [1, 2, 3])
    bundle = {"format": "trellis.anchor-bundle/v2", "chain_id": chain, "digest": digest.hex(),
              "record": {"sender": sender.hex(), "tag": tag, "tx_hash": tx.hex()},
              "state": {"height": 19, "root": root.hex()},
              "state_proof": state_proof.hex(), "genesis_digest": gdigest.hex(),
              "genesis_proof": genesis_proof.hex(),
              "headers": [pb_header(x).hex() for x in (h0, h1, h2)],
              "commit_qc": pb_qc(qc).hex(), "epoch_changes": [pb_epoch_change(ec).hex()]}
    parts = {"seeds0": seeds0, "seeds1": seeds1, "headers": [h0, h1, h2], "vd": vd, "qc": qc,
             "ec": ec, "vd0": vd0}
    return gtext, bundle, parts


class SyntheticChain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gtext, cls.bundle, cls.parts = synthetic_chain()

    def check(self, bundle, expect_link, expect_index=None):
        v = verdict(json.dumps(bundle), self.gtext)
        if expect_link is None:
            self.assertTrue(v["valid"], v)
        else:
            self.assertEqual((v["link"], v["index"]), (expect_link, expect_index), v["reason"])
        return v

    def with_headers(self, hs):
        return dict(self.bundle, headers=[pb_header(x).hex() for x in hs])

    def test_valid(self):
        v = self.check(self.bundle, None)
        self.assertEqual((v["epoch"], v["signers"], v["committee_size"], v["state_height"],
                          v["tag"]), (1, 3, 4, 19, "t\u00e9st"))

    def test_header_links(self):
        h0, h1, h2 = self.parts["headers"]
        self.check(self.with_headers([]), "no-headers")
        self.check(self.with_headers([h1, h2]), "state-not-committed")
        self.check(self.with_headers([h0, dict(h1, chain_id="x"), dict(h2, chain_id="y")]),
                   "other-chain", 1)
        self.check(self.with_headers([h0, h2]), "unlinked", 1)
        self.check(self.with_headers([dict(h0, height=19), h1, h2]), "unlinked", 1)
        self.check(self.with_headers([dict(h0, round=0), h1, h2]), "unlinked", 1)

    def test_height_and_round_links_on_relinked_headers(self):
        h0, h1, h2 = self.parts["headers"]

        def chain(*hs):
            out = [dict(hs[0])]
            for x in hs[1:]:
                out.append(dict(x, parent_id=hid(out[-1])))
            return out
        self.check(self.with_headers(chain(h0, h1, dict(h2, height=23))), "height", 2)
        self.check(self.with_headers(chain(h0, dict(h1, state={"height": 21, "root": b"\x79" * 32}),
                                           h2)), "height", 1)
        self.check(self.with_headers(chain(h0, dict(h1, round=0), h2)), "round", 1)
        self.check(self.with_headers(chain(h0, dict(h1, round=3), h2)), "round", 1)
        self.check(self.with_headers(chain(h0, dict(h1, epoch=3), h2)), "round", 1)
        # the next epoch, any round: fine for check 10; the certificate is then refused
        self.check(self.with_headers(chain(h0, h1, dict(h2, epoch=2, round=1))), "not-committed")

    def test_certificate_links(self):
        p = self.parts
        seeds1, vd = p["seeds1"], p["vd"]
        chain = self.bundle["chain_id"]

        def with_vd(**kw):
            return dict(self.bundle, commit_qc=pb_qc(make_qc(chain, dict(vd, **kw), seeds1,
                                                             [0, 1, 2])).hex())
        self.check(with_vd(), None)
        self.check(with_vd(height=24), "not-committed")
        self.check(with_vd(round=8), "not-committed")
        self.check(with_vd(round=7, parent_round=5), "not-committed")
        self.check(with_vd(parent_id=b"\x00" * 32), "not-committed")
        self.check(with_vd(epoch=2), "epoch-mismatch")
        self.check(dict(self.bundle, epoch_changes=[]), "epoch-changes")
        qc = make_qc(chain, vd, seeds1, [0, 1])
        self.check(dict(self.bundle, commit_qc=pb_qc(qc).hex()), "commit-cert")
        qc = make_qc(chain, vd, p["seeds0"], [0, 1, 2])  # the old committee
        self.check(dict(self.bundle, commit_qc=pb_qc(qc).hex()), "commit-cert")

    def test_epoch_change_links(self):
        p = self.parts
        ec, seeds0 = p["ec"], p["seeds0"]
        chain = self.bundle["chain_id"]

        def with_ec(e):
            return dict(self.bundle, epoch_changes=[pb_epoch_change(e).hex()])
        self.check(with_ec(dict(ec, ending=dict(ec["ending"], next_committee=None))),
                   "epoch-change", 0)
        self.check(with_ec(dict(ec, suffix=[])), "epoch-change", 0)
        qc = make_qc(chain, p["vd0"], seeds0, [0, 1])
        self.check(with_ec(dict(ec, commit_qc=qc)), "epoch-change", 0)
        # the suffix may be empty when the certificate commits the ending block itself
        vd0 = dict(p["vd0"], parent_id=hid(ec["ending"]), parent_round=12, round=13)
        self.check(with_ec(dict(ec, suffix=[], commit_qc=make_qc(chain, vd0, seeds0, [1, 2, 3]))),
                   None)
        # a weak key in a next committee makes the header fail to decode
        weak = dict(ec["ending"], next_committee={"members": [b"\x00" * 32]})
        v = self.check(with_ec(dict(ec, ending=weak)), "malformed")
        self.assertEqual(v["field"], "epoch_changes[0]")

    def test_batch_rate_on_flips(self):
        """Single-bit flips of the synthetic bundle, as the harness makes them: all refused."""
        with tempfile.TemporaryDirectory() as d:
            gp = os.path.join(d, "genesis.json")
            with open(gp, "w") as f:
                f.write(self.gtext)
            text = json.dumps(self.bundle)
            lines = []
            for field in ("commit_qc", "headers"):
                raw = self.bundle[field] if field == "commit_qc" else self.bundle[field][2]
                raw = h(raw)
                for i in range(0, len(raw) * 8, 7):
                    b = bytearray(raw)
                    b[i // 8] ^= 1 << (i % 8)
                    x = json.loads(text)
                    if field == "commit_qc":
                        x[field] = b.hex()
                    else:
                        x[field][2] = b.hex()
                    lines.append(json.dumps({"genesis": gp, "bundle": json.dumps(x)}))
            out = io.StringIO()
            tv.run_batch(io.StringIO("\n".join(lines) + "\n"), out)
            answers = [json.loads(x) for x in out.getvalue().splitlines()]
            self.assertEqual(len(answers), len(lines))
            self.assertFalse(any(a["valid"] for a in answers))
