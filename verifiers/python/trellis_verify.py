#!/usr/bin/env python3
"""A second, independent verifier of Trellis anchor proof bundles (format v2).

Written from docs/proof-format.md alone, with the Python standard library only. Section
numbers (§) in the comments refer to that document.

    trellis_verify.py --bundle BUNDLE.json --genesis GENESIS.json [--json]
    trellis_verify.py --batch            (JSON lines on stdin, one verdict line each)
    trellis_verify.py --vectors testdata/proofs/vectors.json

Exit codes (§9.2): 0 valid, 1 refused, 2 unusable input.
"""

import argparse
import hashlib
import json
import os
import re
import sys

BUNDLE_FORMAT = "trellis.anchor-bundle/v2"
VECTORS_FORMAT = "trellis.proof-vectors/v1"

GENESIS_DOMAIN = b"trellis/genesis-file/v1"
BLOCK_DOMAIN = b"trellis/block-header/v1"
VOTE_DOMAIN = b"trellis/vote-data/v1"
SIGNING_DOMAIN = b"trellis/consensus/signing/v1"
VOTE_KIND = 2

ANCHOR_PREFIX = b"anchor/"
GENESIS_KEY = b"chain/genesis"
JMT_LEAF = b"JMT::LeafNode"
JMT_INTERNAL = b"JMT::IntrnalNode"
PLACEHOLDER = b"SPARSE_MERKLE_PLACEHOLDER_HASH__"

MAX_COMMITTEE = 1024
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1


def sha256(data):
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------------------------
# Errors and verdicts


class Refused(Exception):
    """The bundle is refused (or an input unusable) at link `link`."""

    def __init__(self, link, reason, index=None, field=None):
        super().__init__(reason)
        self.link = link
        self.reason = reason
        self.index = index
        self.field = field


class Malformed(Exception):
    """A parse rule is broken (§2, §4, §8.2); becomes link `malformed`."""

    def __init__(self, reason, field=None):
        super().__init__(reason)
        self.reason = reason
        self.field = field


# §9.2; "internal-error" (exit 3) is this verifier's own, for a bug in it, and never expected.
EXIT_CODES = {"genesis-file": 2, "bundle-file": 2, "internal-error": 3}


def refused_verdict(link, reason, index=None, field=None):
    return {
        "valid": False,
        "link": link,
        "index": index,
        "field": field if link == "malformed" else None,
        "reason": reason,
    }


def exit_code(verdict):
    if verdict["valid"]:
        return 0
    return EXIT_CODES.get(verdict["link"], 1)


# ---------------------------------------------------------------------------------------------
# Ed25519 (RFC 8032 arithmetic, ZIP-215 verification, §6.5) and strong keys (§3.4)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
D2 = (2 * D) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
_MASK255 = (1 << 255) - 1
IDENTITY = (0, 1, 1, 0)


def decode_point(b, strict):
    """RFC 8032 §5.1.3 decoding; `strict=False` is the lenient ZIP-215 decoding of §6.5.

    Returns the point in extended coordinates (X, Y, Z, T), or None."""
    if len(b) != 32:
        return None
    v = int.from_bytes(b, "little")
    x0 = v >> 255
    y = v & _MASK255
    if strict and y >= P:
        return None
    y %= P
    yy = y * y % P
    u = (yy - 1) % P
    w = (D * yy + 1) % P
    w3 = w * w % P * w % P
    w7 = w3 * w3 % P * w % P
    x = u * w3 % P * pow(u * w7 % P, (P - 5) // 8, P) % P
    wxx = w * x % P * x % P
    if wxx == u:
        pass
    elif wxx == (P - u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if strict and x == 0 and x0 == 1:
        return None
    if (x & 1) != x0:
        x = (P - x) % P
    return (x, y, 1, x * y % P)


def encode_point(pt):
    X, Y, Z, _ = pt
    zi = pow(Z, P - 2, P)
    x = X * zi % P
    y = Y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_add(p1, p2):
    X1, Y1, Z1, T1 = p1
    X2, Y2, Z2, T2 = p2
    a = (Y1 - X1) * (Y2 - X2) % P
    b = (Y1 + X1) * (Y2 + X2) % P
    c = T1 * D2 % P * T2 % P
    d = 2 * Z1 * Z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_double(p1):
    X1, Y1, Z1, _ = p1
    a = X1 * X1 % P
    b = Y1 * Y1 % P
    c = 2 * Z1 * Z1 % P
    h = a + b
    e = (h - (X1 + Y1) * (X1 + Y1)) % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_neg(pt):
    X, Y, Z, T = pt
    return ((P - X) % P, Y, Z, (P - T) % P)


def is_identity(pt):
    X, Y, Z, _ = pt
    return X % P == 0 and (Y - Z) % P == 0


def scalar_mult(pt, s):
    """[s]pt, plain 4-bit fixed window (used for keys without a precomputed table)."""
    if s == 0:
        return IDENTITY
    mult = [IDENTITY, pt]
    for _ in range(14):
        mult.append(point_add(mult[-1], pt))
    digits = []
    while s:
        digits.append(s & 15)
        s >>= 4
    acc = IDENTITY
    for dgt in reversed(digits):
        acc = point_double(point_double(point_double(point_double(acc))))
        if dgt:
            acc = point_add(acc, mult[dgt])
    return acc


_BY = 4 * pow(5, P - 2, P) % P
BASE = decode_point(_BY.to_bytes(32, "little"), True)  # y = 4/5, x even (§Appendix B)


def _build_table(pt):
    """Affine Niels table: table[w][j] = [j * 16^w] pt as (y+x, y-x, 2d*x*y), j in 1..15."""
    rows = []
    q = pt
    for _ in range(64):
        row = [q]
        for _ in range(14):
            row.append(point_add(row[-1], q))
        rows.append(row)
        q = point_add(row[-1], q)  # [16] q
    flat = [e for row in rows for e in row]
    # batch inversion of the Z coordinates
    prefix = []
    acc = 1
    for e in flat:
        prefix.append(acc)
        acc = acc * e[2] % P
    inv = pow(acc, P - 2, P)
    zinv = [0] * len(flat)
    for i in range(len(flat) - 1, -1, -1):
        zinv[i] = inv * prefix[i] % P
        inv = inv * flat[i][2] % P
    niels = []
    for e, zi in zip(flat, zinv):
        x = e[0] * zi % P
        y = e[1] * zi % P
        niels.append(((y + x) % P, (y - x) % P, D2 * x % P * y % P))
    return [[None] + niels[w * 15:(w + 1) * 15] for w in range(64)]


def _table_mult_add(acc, table, s):
    """acc + [s]Q, Q given by its table; s < 2^256."""
    X1, Y1, Z1, T1 = acc
    w = 0
    while s:
        dgt = s & 15
        if dgt:
            ypx, ymx, xy2d = table[w][dgt]
            a = (Y1 - X1) * ymx % P
            b = (Y1 + X1) * ypx % P
            c = T1 * xy2d % P
            d = 2 * Z1
            e, f, g, h = b - a, d - c, d + c, b + a
            X1, Y1, Z1, T1 = e * f % P, g * h % P, f * g % P, e * h % P
        s >>= 4
        w += 1
    return (X1, Y1, Z1, T1)


BASE_TABLE = _build_table(BASE)

_key_points = {}  # key bytes -> lenient point or None
_key_uses = {}
_neg_tables = {}  # key bytes -> table of -A
MAX_TABLES = 256


def _neg_key_table(a_bytes):
    t = _neg_tables.get(a_bytes)
    if t is not None:
        return t
    n = _key_uses.get(a_bytes, 0) + 1
    _key_uses[a_bytes] = n
    if n >= 3 and len(_neg_tables) < MAX_TABLES:
        t = _build_table(point_neg(_key_points[a_bytes]))
        _neg_tables[a_bytes] = t
        return t
    return None


def ed25519_verify(a_bytes, msg, sig):
    """ZIP-215 verification (§6.5): canonical S, lenient R and A, cofactored equation."""
    if len(sig) != 64 or len(a_bytes) != 32:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    r_bytes = sig[:32]
    r = decode_point(r_bytes, False)
    if r is None:
        return False
    if a_bytes in _key_points:
        a = _key_points[a_bytes]
    else:
        a = decode_point(a_bytes, False)
        _key_points[a_bytes] = a
    if a is None:
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + a_bytes + msg).digest(), "little") % L
    # [S]B - R - [k]A
    acc = _table_mult_add(point_neg(r), BASE_TABLE, s)
    table = _neg_key_table(a_bytes)
    if table is not None:
        acc = _table_mult_add(acc, table, k)
    else:
        acc = point_add(acc, point_neg(scalar_mult(a, k)))
    acc = point_double(point_double(point_double(acc)))
    return is_identity(acc)


_sig_memo = {}
MAX_SIG_MEMO = 1 << 20


def verify_signature(a_bytes, msg, sig):
    """ed25519_verify, memoized on (key, signature, message)."""
    key = (a_bytes, sig, msg)
    v = _sig_memo.get(key)
    if v is None:
        v = ed25519_verify(a_bytes, msg, sig)
        if len(_sig_memo) >= MAX_SIG_MEMO:
            _sig_memo.clear()
        _sig_memo[key] = v
    return v


_strong_memo = {}


def is_strong_key(a_bytes):
    """§3.4: strict decoding, re-encodes to itself, not the identity, [L]A is the identity."""
    v = _strong_memo.get(a_bytes)
    if v is None:
        v = _is_strong_key(a_bytes)
        _strong_memo[a_bytes] = v
    return v


def _is_strong_key(a_bytes):
    if len(a_bytes) != 32:
        return False
    pt = decode_point(a_bytes, True)
    if pt is None:
        return False
    if encode_point(pt) != a_bytes:
        return False
    if is_identity(pt):
        return False
    return is_identity(scalar_mult(pt, L))


# ---------------------------------------------------------------------------------------------
# Strict JSON (§2.1)

_SURROGATE = re.compile("[\ud800-\udfff]")


class _JSONRefused(Exception):
    pass


def _pairs_hook(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise _JSONRefused("member %r appears twice" % k)
        obj[k] = v
    return obj


def _parse_int(s):
    if s.startswith("-"):
        raise _JSONRefused("a negative number")
    v = int(s)
    if v > U64_MAX:
        raise _JSONRefused("a number above 2^64 - 1")
    return v


def _parse_float(s):
    raise _JSONRefused("a number with a fraction or an exponent: %s" % s)


def _parse_constant(s):
    raise _JSONRefused("%s is not JSON" % s)


_decoder = json.JSONDecoder(
    object_pairs_hook=_pairs_hook,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    strict=True,
)


def _check_strings(v, depth=0):
    if isinstance(v, str):
        if _SURROGATE.search(v):
            raise _JSONRefused("an escape of an unpaired UTF-16 surrogate")
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_strings(k)
            _check_strings(x)
    elif isinstance(v, list):
        for x in v:
            _check_strings(x)


def strict_json(text):
    """Parse `text` (a str decoded from UTF-8, so without surrogates) under §2.1; raise
    _JSONRefused. Numbers come out as int."""
    if text.startswith("\ufeff"):
        raise _JSONRefused("a byte order mark")
    try:
        value, end = _decoder.raw_decode(text, _skip_ws(text, 0))
    except _JSONRefused:
        raise
    except (ValueError, RecursionError) as e:
        raise _JSONRefused("not JSON: %s" % e)
    if _skip_ws(text, end) != len(text):
        raise _JSONRefused("data after the top-level value")
    if _SURROGATE_ESCAPE.search(text):  # only such an escape can put a surrogate in a value
        _check_strings(value)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text, i):
    return _WS.match(text, i).end()


def is_int(v):
    return type(v) is int


# ---------------------------------------------------------------------------------------------
# The genesis file (§3)

WHITE_SPACE = set(
    [chr(c) for c in range(0x09, 0x0E)]
    + ["\u0020", "\u0085", "\u00a0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)


def is_control(ch):
    o = ord(ch)
    return o <= 0x1F or 0x7F <= o <= 0x9F


_ORG_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ANYHEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
ROLES = ("member", "operator", "regulator", "bank")
PARAM_DEFAULTS = {
    "max_tx_bytes": 65536,
    "max_block_txs": 4000,
    "max_block_bytes": 4194304,
    "epoch_length_blocks": None,
    "approval_num": 2,
    "approval_den": 3,
    "proposal_ttl_blocks": 432000,
}


class GenesisError(Exception):
    pass


class Genesis:
    def __init__(self, chain_id, genesis_time_ms, validators, accounts, params, shards=()):
        self.chain_id = chain_id
        self.genesis_time_ms = genesis_time_ms
        self.validators = validators  # [(name, key bytes, org or None)]
        self.accounts = accounts  # [(name, org, role, key bytes)]
        self.shards = list(shards)  # [(shard_id, [member org], [(name, key bytes, org)])]
        self.params = params  # dict with defaults applied
        self.committee = [k for _, k, _ in validators]
        self.digest = genesis_digest(self)


def _members(obj, what, required, optional=()):
    if type(obj) is not dict:
        raise GenesisError("%s is not an object" % what)
    for k in obj:
        if k not in required and k not in optional:
            raise GenesisError("%s has an unknown member %r" % (what, k))
    for k in required:
        if k not in obj:
            raise GenesisError("%s lacks the member %r" % (what, k))


def _g_str(v, what):
    if type(v) is not str:
        raise GenesisError("%s is not a string" % what)
    return v


def _g_int(v, what, maximum=U64_MAX):
    if not is_int(v):
        raise GenesisError("%s is not an integer" % what)
    if v > maximum:
        raise GenesisError("%s is too large" % what)
    return v


def _g_key(v, what):
    _g_str(v, what)
    if not _ANYHEX64_RE.fullmatch(v):
        raise GenesisError("%s is not 64 hex digits" % what)
    key = bytes.fromhex(v)
    if not is_strong_key(key):
        raise GenesisError("%s is not a strong key (§3.4)" % what)
    return key


def _has_non_space(s):
    return any(ch not in WHITE_SPACE for ch in s)


def _g_committee(vals, what):
    """A committee (`validators`, or a shard's `validators`) per §3.2: 1 to 1024 entries, each
    with a non-blank name and a strong key, no key twice. Returns [(name, key, org or None)];
    `org` is only checked to be a string here."""
    if type(vals) is not list:
        raise GenesisError("%s is not an array" % what)
    if not 1 <= len(vals) <= MAX_COMMITTEE:
        raise GenesisError("%s must have 1 to 1024 entries" % what)
    validators = []
    seen = {}
    for i, v in enumerate(vals):
        at = "%s[%d]" % (what, i)
        _members(v, at, ("name", "consensus_key"), ("org",))
        name = _g_str(v["name"], at + ".name")
        if not _has_non_space(name):
            raise GenesisError("%s.name is blank" % at)
        key = _g_key(v["consensus_key"], at + ".consensus_key")
        if key in seen:
            raise GenesisError("%s.consensus_key is the key of %s[%d]" % (at, what, seen[key]))
        seen[key] = i
        org = _g_str(v["org"], at + ".org") if "org" in v else None
        validators.append((name, key, org))
    return validators


def _g_shards(shs, chain_id, member_orgs):
    """`shards` per §3.1 and §3.2, in the order the reference applies the rules."""
    if type(shs) is not list:
        raise GenesisError("shards is not an array")
    shards = []
    ids = set()
    for i, sh in enumerate(shs):
        at = "shards[%d]" % i
        _members(sh, at, ("shard_id", "members", "validators"))
        shard_id = _g_str(sh["shard_id"], at + ".shard_id")
        members = sh["members"]
        if type(members) is not list:
            raise GenesisError("%s.members is not an array" % at)
        for j, m in enumerate(members):
            _g_str(m, "%s.members[%d]" % (at, j))
        if not _ORG_RE.fullmatch(shard_id):
            raise GenesisError("%s.shard_id must be 1 to 64 of A-Z a-z 0-9 . _ -" % at)
        if shard_id == chain_id or shard_id in ids:
            raise GenesisError("%s.shard_id must differ from chain_id and from every other "
                               "shard's" % at)
        ids.add(shard_id)
        validators = _g_committee(sh["validators"], at + ".validators")
        if not members:
            raise GenesisError("%s.members must have at least one org" % at)
        seen = set()
        for j, m in enumerate(members):
            if m not in member_orgs:
                raise GenesisError("%s.members[%d] is not an org with an account of role member"
                                   % (at, j))
            if m in seen:
                raise GenesisError("%s.members[%d] is listed twice" % (at, j))
            seen.add(m)
        for j, (_, _, org) in enumerate(validators):
            if org is None or org not in members:
                raise GenesisError("%s.validators[%d].org must name one of the shard's members"
                                   % (at, j))
        shards.append((shard_id, list(members), validators))
    return shards


def parse_genesis(data):
    """Parse and validate a genesis file (bytes) per §3.1 and §3.2; raise GenesisError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GenesisError("the genesis file is not UTF-8")
    try:
        top = strict_json(text)
    except _JSONRefused as e:
        raise GenesisError("the genesis file is not strict JSON: %s" % e)
    _members(top, "the genesis file", ("chain_id", "genesis_time_ms", "validators"),
             ("accounts", "shards", "params"))
    chain_id = _g_str(top["chain_id"], "chain_id")
    if not 1 <= len(chain_id) <= 64:
        raise GenesisError("chain_id must have 1 to 64 characters")
    for ch in chain_id:
        if ch in WHITE_SPACE or is_control(ch):
            raise GenesisError("chain_id holds white space or a control character")
    time_ms = _g_int(top["genesis_time_ms"], "genesis_time_ms")

    validators = _g_committee(top["validators"], "validators")

    accs = top.get("accounts", [])
    if type(accs) is not list:
        raise GenesisError("accounts is not an array")
    accounts = []
    seen = set()
    for i, a in enumerate(accs):
        what = "accounts[%d]" % i
        _members(a, what, ("name", "org", "role", "public_key"))
        name = _g_str(a["name"], what + ".name")
        if not _has_non_space(name):
            raise GenesisError("%s.name is blank" % what)
        org = _g_str(a["org"], what + ".org")
        if not _ORG_RE.fullmatch(org):
            raise GenesisError("%s.org must be 1 to 64 of A-Z a-z 0-9 . _ -" % what)
        role = _g_str(a["role"], what + ".role")
        if role not in ROLES:
            raise GenesisError("%s.role is not one of %s" % (what, ", ".join(ROLES)))
        key = _g_key(a["public_key"], what + ".public_key")
        if key in seen:
            raise GenesisError("%s has the key of an earlier account" % what)
        seen.add(key)
        accounts.append((name, org, role, key))

    for i, (_, _, org) in enumerate(validators):
        if org is not None and not _ORG_RE.fullmatch(org):
            raise GenesisError("validators[%d].org must be 1 to 64 of A-Z a-z 0-9 . _ -" % i)
    member_orgs = set(org for _, org, role, _ in accounts if role == "member")
    shards = _g_shards(top.get("shards", []), chain_id, member_orgs)

    params = dict(PARAM_DEFAULTS)
    if "params" in top:
        pobj = top["params"]
        _members(pobj, "params", (), tuple(PARAM_DEFAULTS))
        for k, v in pobj.items():
            what = "params." + k
            if k == "epoch_length_blocks":
                params[k] = None if v is None else _g_int(v, what)
            elif k in ("approval_num", "approval_den"):
                params[k] = _g_int(v, what, U32_MAX)
            else:
                params[k] = _g_int(v, what)
    for k in ("max_tx_bytes", "max_block_txs", "max_block_bytes", "proposal_ttl_blocks"):
        if params[k] < 1:
            raise GenesisError("params.%s must be at least 1" % k)
    if params["epoch_length_blocks"] is not None and params["epoch_length_blocks"] < 1:
        raise GenesisError("params.epoch_length_blocks must be null or at least 1")
    num, den = params["approval_num"], params["approval_den"]
    if not 1 <= den <= 1000:
        raise GenesisError("params.approval_den must be 1 to 1000")
    if num > den:
        raise GenesisError("params.approval_num exceeds approval_den")
    if not 2 * num > den:
        raise GenesisError("params.approval_num must be more than half of approval_den")
    if params["proposal_ttl_blocks"] > 100000000:
        raise GenesisError("params.proposal_ttl_blocks exceeds 100000000")
    if params["max_tx_bytes"] > params["max_block_bytes"]:
        raise GenesisError("params.max_tx_bytes exceeds max_block_bytes")
    return Genesis(chain_id, time_ms, validators, accounts, params, shards)


# ---------------------------------------------------------------------------------------------
# The encoder (§5.1) and the hashed structures (§3.3, §5.2 to §5.4)


def u8(v):
    return v.to_bytes(1, "big")


def u32(v):
    return v.to_bytes(4, "big")


def u64(v):
    return v.to_bytes(8, "big")


def enc_bytes(x):
    return u32(len(x)) + x


def genesis_encoding(g):
    out = [enc_bytes(GENESIS_DOMAIN), enc_bytes(g.chain_id.encode("utf-8")), u64(g.genesis_time_ms)]
    out.append(u32(len(g.validators)))
    for name, key, _ in g.validators:
        out += [enc_bytes(name.encode("utf-8")), key]
    out.append(u32(len(g.accounts)))
    for name, org, role, key in g.accounts:
        out += [enc_bytes(name.encode("utf-8")), enc_bytes(org.encode("utf-8")),
                enc_bytes(role.encode("utf-8")), key]
    p = g.params
    out += [u64(p["max_tx_bytes"]), u64(p["max_block_txs"]), u64(p["max_block_bytes"])]
    if p["epoch_length_blocks"] is None:
        out.append(u8(0))
    else:
        out += [u8(1), u64(p["epoch_length_blocks"])]
    out += [u32(p["approval_num"]), u32(p["approval_den"]), u64(p["proposal_ttl_blocks"])]
    # Node orgs and shards (format v2): a file without them keeps its version-1 digest.
    if any(org is not None for _, _, org in g.validators) or g.shards:
        out.append(u8(1))
        for _, _, org in g.validators:
            out.append(enc_bytes((org or "").encode("utf-8")))
        out.append(u32(len(g.shards)))
        for shard_id, members, validators in g.shards:
            out += [enc_bytes(shard_id.encode("utf-8")), u32(len(members))]
            out += [enc_bytes(m.encode("utf-8")) for m in members]
            out.append(u32(len(validators)))
            for name, key, org in validators:
                out += [enc_bytes(name.encode("utf-8")), key,
                        enc_bytes((org or "").encode("utf-8"))]
    return b"".join(out)


def genesis_digest(g):
    return sha256(genesis_encoding(g))


def header_encoding(h):
    out = [
        enc_bytes(BLOCK_DOMAIN),
        enc_bytes(h["chain_id"].encode("utf-8")),
        u64(h["epoch"]), u64(h["round"]), u64(h["height"]),
        h["parent_id"], h["qc_digest"], u32(h["author"]), u64(h["timestamp_ms"]),
        h["payload_digest"], u64(h["state"]["height"]), h["state"]["root"],
    ]
    nc = h["next_committee"]
    if nc is None:
        out.append(u8(0))
    else:
        out += [u8(1), u32(len(nc["members"]))] + list(nc["members"])
    return b"".join(out)


def header_id(h):
    hid = h.get("_id")
    if hid is None:
        hid = sha256(header_encoding(h))
        h["_id"] = hid
    return hid


def vote_data_encoding(vd):
    return b"".join([
        enc_bytes(VOTE_DOMAIN), u64(vd["epoch"]), u64(vd["round"]), u64(vd["height"]),
        vd["block_id"], vd["parent_id"], u64(vd["parent_round"]), u8(1 if vd["ends_epoch"] else 0),
    ])


def vote_data_digest(vd):
    return sha256(vote_data_encoding(vd))


def signing_bytes(vd, chain_id):
    return b"".join([
        enc_bytes(SIGNING_DOMAIN), u8(VOTE_KIND), enc_bytes(chain_id.encode("utf-8")),
        u64(vd["epoch"]), u64(vd["round"]), vd["block_id"], vote_data_digest(vd),
    ])


def anchor_record_encoding(sender, tag, tx_hash):
    """§4.3: 0a 20 ‖ sender ‖ [12 ‖ varint(len(tag)) ‖ tag] ‖ 1a 20 ‖ tx_hash."""
    out = b"\x0a\x20" + sender
    t = tag.encode("utf-8")
    if t:
        out += b"\x12" + encode_varint(len(t)) + t
    return out + b"\x1a\x20" + tx_hash


def encode_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# ---------------------------------------------------------------------------------------------
# Canonical protobuf (§4)


class ProtoError(Exception):
    pass


UINT64, BOOL, BYTES, STRING = "uint64", "bool", "bytes", "string"


class Msg:
    """A message schema: key byte -> (name, kind, repeated); kind is a scalar or a Msg."""

    def __init__(self, name, fields, required=(), check=None):
        self.name = name
        self.fields = {}
        self.defaults = {}
        self.required = required
        self.check = check
        self.repeated = [f[1] for f in fields if f[3]]
        for key, fname, kind, repeated in fields:
            self.fields[key] = (fname, kind, repeated)
            if repeated:
                self.defaults[fname] = None  # a new list per decode
            elif kind == UINT64:
                self.defaults[fname] = 0
            elif kind == BOOL:
                self.defaults[fname] = False
            elif kind == BYTES:
                self.defaults[fname] = b""
            elif kind == STRING:
                self.defaults[fname] = ""
            else:
                self.defaults[fname] = None


def read_varint(buf, i, end):
    """A minimal varint (§4.2 rule 6) at buf[i:end]; returns (value, next index)."""
    start = i
    v = 0
    shift = 0
    while True:
        if i >= end:
            raise ProtoError("a varint runs past the end")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if i - start >= 10:
            raise ProtoError("a varint longer than 10 bytes")
    n = i - start
    if n > 1 and b == 0:
        raise ProtoError("a varint that is not minimal")
    if n == 10 and b != 1:
        raise ProtoError("a varint above 2^64 - 1")
    return v, i


def decode_message(buf, schema, start=0, end=None):
    if end is None:
        end = len(buf)
    out = dict(schema.defaults)
    for fname in schema.repeated:
        out[fname] = []
    fields = schema.fields
    i = start
    last = 0
    while i < end:
        key = buf[i]
        i += 1
        f = fields.get(key)
        if f is None:
            raise ProtoError("%s: unknown key byte %02x" % (schema.name, key))
        fname, kind, repeated = f
        num = key >> 3
        if num < last or (num == last and not repeated):
            raise ProtoError("%s: field %s out of order or repeated" % (schema.name, fname))
        last = num
        if key & 7 == 0:
            v, i = read_varint(buf, i, end)
            if kind == BOOL:
                if v != 1:
                    raise ProtoError("%s.%s: a bool that is not 01" % (schema.name, fname))
                out[fname] = True
            else:
                if v == 0:
                    raise ProtoError("%s.%s: a 0 written out" % (schema.name, fname))
                out[fname] = v
        else:
            n, i = read_varint(buf, i, end)
            if n > end - i:
                raise ProtoError("%s.%s: a length past the end" % (schema.name, fname))
            j = i + n
            if kind == BYTES or kind == STRING:
                v = bytes(buf[i:j])
                if kind == STRING:
                    try:
                        v = v.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtoError("%s.%s: not UTF-8" % (schema.name, fname))
                if not repeated and n == 0:
                    raise ProtoError("%s.%s: an empty value written out" % (schema.name, fname))
            else:
                v = decode_message(buf, kind, i, j)
            i = j
            if repeated:
                out[fname].append(v)
            else:
                out[fname] = v
    for fname in schema.required:
        if out[fname] is None:
            raise ProtoError("%s: the required %s is absent" % (schema.name, fname))
    if schema.check is not None:
        schema.check(out)
    return out


def _len32(m, name, fields):
    for f in fields:
        if len(m[f]) != 32:
            raise ProtoError("%s.%s is not 32 bytes" % (name, f))


def _check_state(m):
    _len32(m, "StateCommitment", ("root",))


def _check_committee(m):
    members = m["members"]
    if not 1 <= len(members) <= MAX_COMMITTEE:
        raise ProtoError("Committee: %d members (1 to 1024)" % len(members))
    for k in members:
        if len(k) != 32:
            raise ProtoError("Committee: a member is not 32 bytes")
    if len(set(members)) != len(members):
        raise ProtoError("Committee: two members are equal")
    for k in members:
        if not is_strong_key(k):
            raise ProtoError("Committee: member %s is not a strong key" % k.hex())


def _check_header(m):
    _len32(m, "BlockHeader", ("parent_id", "qc_digest", "payload_digest"))
    if m["author"] > U32_MAX:
        raise ProtoError("BlockHeader.author above 2^32 - 1")


def _check_vote_data(m):
    _len32(m, "VoteData", ("block_id", "parent_id"))


def _check_qc(m):
    for s in m["signatures"]:
        if len(s) != 64:
            raise ProtoError("QuorumCert: a signature is not 64 bytes")


STATE_COMMITMENT = Msg("StateCommitment", [
    (0x08, "height", UINT64, False),
    (0x12, "root", BYTES, False),
], check=_check_state)

COMMITTEE = Msg("Committee", [
    (0x0A, "members", BYTES, True),
], check=_check_committee)

BLOCK_HEADER = Msg("BlockHeader", [
    (0x0A, "chain_id", STRING, False),
    (0x10, "epoch", UINT64, False),
    (0x18, "round", UINT64, False),
    (0x20, "height", UINT64, False),
    (0x2A, "parent_id", BYTES, False),
    (0x32, "qc_digest", BYTES, False),
    (0x38, "author", UINT64, False),
    (0x40, "timestamp_ms", UINT64, False),
    (0x4A, "payload_digest", BYTES, False),
    (0x52, "state", STATE_COMMITMENT, False),
    (0x5A, "next_committee", COMMITTEE, False),
], required=("state",), check=_check_header)

VOTE_DATA = Msg("VoteData", [
    (0x08, "epoch", UINT64, False),
    (0x10, "round", UINT64, False),
    (0x18, "height", UINT64, False),
    (0x22, "block_id", BYTES, False),
    (0x2A, "parent_id", BYTES, False),
    (0x30, "parent_round", UINT64, False),
    (0x38, "ends_epoch", BOOL, False),
], check=_check_vote_data)

QUORUM_CERT = Msg("QuorumCert", [
    (0x0A, "vote_data", VOTE_DATA, False),
    (0x12, "signers", BYTES, False),
    (0x1A, "signatures", BYTES, True),
], required=("vote_data",), check=_check_qc)

EPOCH_CHANGE_PROOF = Msg("EpochChangeProof", [
    (0x0A, "ending", BLOCK_HEADER, False),
    (0x12, "suffix", BLOCK_HEADER, True),
    (0x1A, "commit_qc", QUORUM_CERT, False),
], required=("ending", "commit_qc"))

STATE_PROOF = Msg("StateProof", [
    (0x0A, "jmt_proof", BYTES, False),
])


# ---------------------------------------------------------------------------------------------
# State proofs (§8)


def decode_jmt_proof(b):
    """§8.2: returns (leaf or None, [sibling node hash]); raise ProtoError."""
    n = len(b)
    if n < 1:
        raise ProtoError("jmt_proof: empty")
    tag = b[0]
    i = 1
    if tag == 0:
        leaf = None
    elif tag == 1:
        if n < i + 64:
            raise ProtoError("jmt_proof: the leaf is cut short")
        leaf = (b[i:i + 32], b[i + 32:i + 64])
        i += 64
    else:
        raise ProtoError("jmt_proof: leaf tag %02x" % tag)
    if n < i + 4:
        raise ProtoError("jmt_proof: the sibling count is cut short")
    c = int.from_bytes(b[i:i + 4], "little")
    i += 4
    if c > n - i:
        raise ProtoError("jmt_proof: %d siblings cannot fit" % c)
    siblings = []
    for _ in range(c):
        if i >= n:
            raise ProtoError("jmt_proof: a sibling is cut short")
        t = b[i]
        i += 1
        if t == 0:
            siblings.append(PLACEHOLDER)
        elif t == 1 or t == 2:
            if n < i + 64:
                raise ProtoError("jmt_proof: a sibling is cut short")
            prefix = JMT_INTERNAL if t == 1 else JMT_LEAF
            siblings.append(sha256(prefix + b[i:i + 64]))
            i += 64
        else:
            raise ProtoError("jmt_proof: sibling tag %02x" % t)
    if i != n:
        raise ProtoError("jmt_proof: %d trailing bytes" % (n - i))
    return leaf, siblings


def jmt_verify(proof, key, value, root):
    """§8.3: does `proof` show that `key` holds `value` under `root`?"""
    leaf, siblings = proof
    c = len(siblings)
    if c > 256:
        return False
    if leaf is None:
        return False
    key_hash = sha256(key)
    if leaf[0] != key_hash or leaf[1] != sha256(value):
        return False
    return jmt_fold(leaf, siblings, key_hash)[-1] == root


def jmt_fold(leaf, siblings, key_hash):
    """§8.3 steps 3 and 4: the leaf hash, then the hash after each sibling (the last is the
    root the proof implies)."""
    c = len(siblings)
    h = sha256(JMT_LEAF + leaf[0] + leaf[1])
    out = [h]
    for j, s in enumerate(siblings):
        depth = c - 1 - j
        bit = (key_hash[depth // 8] >> (7 - depth % 8)) & 1
        h = sha256(JMT_INTERNAL + s + h) if bit else sha256(JMT_INTERNAL + h + s)
        out.append(h)
    return out


# ---------------------------------------------------------------------------------------------
# The bundle (§2)

_HEX_RE = re.compile(r"(?:[0-9a-f][0-9a-f])*")

BUNDLE_TYPES = {
    "format": str, "chain_id": str, "digest": str, "record": dict, "state": dict,
    "state_proof": str, "genesis_digest": str, "genesis_proof": str, "headers": list,
    "commit_qc": str, "epoch_changes": list,
}


class Bundle:
    pass


def _hex(v, field, length=None):
    if not _HEX_RE.fullmatch(v):
        raise Malformed("not lowercase hex of even length", field)
    if length is not None and len(v) != 2 * length:
        raise Malformed("not %d bytes" % length, field)
    return bytes.fromhex(v)


# Decoded hex fields, memoized (the batch mode sees the same fields in many bundles). A
# decoded value is shared, so nothing may change it (header_id only adds the id it computes).
_decoded = {}
MAX_DECODED = 50000


def _memo(kind, v, decode):
    key = (kind, v)
    r = _decoded.get(key)
    if r is None:
        try:
            r = (True, decode(v))
        except Malformed as e:
            r = (False, e.reason)
        if len(_decoded) >= MAX_DECODED:
            _decoded.clear()
        _decoded[key] = r
    return r


def _proto(v, schema, field):
    def decode(v):
        b = _hex(v, field)
        try:
            return decode_message(b, schema)
        except ProtoError as e:
            raise Malformed(str(e), field)
    ok, r = _memo(schema.name, v, decode)
    if not ok:
        raise Malformed(r, field)
    return r


def _state_proof(v, field):
    def decode(v):
        m = _proto(v, STATE_PROOF, field)
        try:
            return decode_jmt_proof(m["jmt_proof"])
        except ProtoError as e:
            raise Malformed(str(e), field)
    ok, r = _memo("jmt", v, decode)
    if not ok:
        raise Malformed(r, field)
    return r


def _exact_members(obj, expected, what):
    if set(obj) != set(expected):
        missing = sorted(set(expected) - set(obj))
        extra = sorted(set(obj) - set(expected))
        raise Malformed("%s: missing %s, unknown %s" % (what, missing, extra), None)


def parse_bundle(text):
    """§2.3: parse the bundle text (a str); raise Malformed."""
    try:
        top = strict_json(text)
    except _JSONRefused as e:
        raise Malformed(str(e), None)
    # (1) a JSON object with a string member `format`
    if type(top) is not dict:
        raise Malformed("the top-level value is not an object", None)
    if type(top.get("format")) is not str:
        raise Malformed("no string member format", "format" if "format" in top else None)
    # (2)
    if top["format"] != BUNDLE_FORMAT:
        raise Malformed("format %r is not %s" % (top["format"], BUNDLE_FORMAT), "format")
    # (3) exactly the members and JSON types
    _exact_members(top, BUNDLE_TYPES, "the bundle")
    for k, t in BUNDLE_TYPES.items():
        if type(top[k]) is not t:
            raise Malformed("member %s has the wrong JSON type" % k, None)
    rec, st = top["record"], top["state"]
    _exact_members(rec, ("sender", "tag", "tx_hash"), "record")
    for k in ("sender", "tag", "tx_hash"):
        if type(rec[k]) is not str:
            raise Malformed("member record.%s has the wrong JSON type" % k, None)
    _exact_members(st, ("height", "root"), "state")
    if not is_int(st["height"]):
        raise Malformed("member state.height is not an integer", None)
    if type(st["root"]) is not str:
        raise Malformed("member state.root is not a string", None)
    for k in ("headers", "epoch_changes"):
        for x in top[k]:
            if type(x) is not str:
                raise Malformed("an element of %s is not a string" % k, None)
    # (4) hex and protobuf contents
    b = Bundle()
    b.chain_id = top["chain_id"]
    b.digest = _hex(top["digest"], "digest", 32)
    b.sender = _hex(rec["sender"], "record.sender", 32)
    b.tag = rec["tag"]
    b.tx_hash = _hex(rec["tx_hash"], "record.tx_hash", 32)
    b.height = st["height"]
    b.root = _hex(st["root"], "state.root", 32)
    b.state_proof = _state_proof(top["state_proof"], "state_proof")
    b.genesis_digest = _hex(top["genesis_digest"], "genesis_digest", 32)
    b.genesis_proof = _state_proof(top["genesis_proof"], "genesis_proof")
    b.headers = [_proto(h, BLOCK_HEADER, "headers[%d]" % i) for i, h in enumerate(top["headers"])]
    b.commit_qc = _proto(top["commit_qc"], QUORUM_CERT, "commit_qc")
    b.epoch_changes = [_proto(p, EPOCH_CHANGE_PROOF, "epoch_changes[%d]" % i)
                       for i, p in enumerate(top["epoch_changes"])]
    return b


# ---------------------------------------------------------------------------------------------
# Quorum certificates (§6) and epoch changes (§7)


def quorum(n):
    return n - (n - 1) // 3


def commits(vd, block_id):
    """§6.1: does a certificate on `vd` commit `block_id`?"""
    return vd["round"] > 0 and vd["parent_round"] + 1 == vd["round"] and vd["parent_id"] == block_id


def signer_indices(signers):
    out = []
    for i, byte in enumerate(signers):
        if byte:
            for bit in range(8):
                if byte >> bit & 1:
                    out.append(8 * i + bit)
    return out


def verify_qc(qc, chain_id, committee):
    """§6.4; returns None when it holds, else the reason."""
    n = len(committee)
    signers = qc["signers"]
    if len(signers) != (n + 7) // 8:
        return "the signer bitmap has %d bytes, not %d" % (len(signers), (n + 7) // 8)
    idx = signer_indices(signers)
    if idx and idx[-1] >= n:
        return "a signer bit at index %d, the committee has %d members" % (idx[-1], n)
    if len(idx) != len(qc["signatures"]):
        return "%d signers but %d signatures" % (len(idx), len(qc["signatures"]))
    if len(idx) < quorum(n):
        return "%d signers, the quorum is %d of %d" % (len(idx), quorum(n), n)
    msg = signing_bytes(qc["vote_data"], chain_id)
    for member, sig in zip(idx, qc["signatures"]):
        if not verify_signature(committee[member], msg, sig):
            return "the signature of member %d does not verify" % member
    return None


def verify_epoch_change(p, chain_id, e, committee):
    """§7; returns (next committee, None) or (None, reason)."""
    ending = p["ending"]
    if ending["next_committee"] is None:
        return None, "the ending header names no next committee"
    if ending["epoch"] != e or ending["chain_id"] != chain_id:
        return None, "the ending header is not of epoch %d of this chain" % e
    last = header_id(ending)
    h = ending["height"]
    for j, s in enumerate(p["suffix"]):
        if s["parent_id"] != last or s["height"] != h + 1 or s["epoch"] != e:
            return None, "suffix header %d does not follow" % j
        if s["next_committee"] is not None:
            return None, "suffix header %d names a next committee" % j
        last = header_id(s)
        h = s["height"]
    vd = p["commit_qc"]["vote_data"]
    if vd["epoch"] != e:
        return None, "the certificate is of epoch %d, not %d" % (vd["epoch"], e)
    if not commits(vd, last):
        return None, "the certificate does not commit the last header"
    if vd["round"] == 0:
        return None, "the certificate has round 0"
    why = verify_qc(p["commit_qc"], chain_id, committee)
    if why is not None:
        return None, why
    return list(ending["next_committee"]["members"]), None


# ---------------------------------------------------------------------------------------------
# The verification procedure (§9.1)


def verify_bundle(b, g):
    """Checks 1 to 15 of §9.1; returns the valid verdict or raises Refused."""
    if b.chain_id.encode("utf-8") != g.chain_id.encode("utf-8"):
        raise Refused("chain-id", "the bundle is of chain %r, the genesis file of %r"
                      % (b.chain_id, g.chain_id))
    if b.genesis_digest != g.digest:
        raise Refused("genesis", "the bundle's genesis digest is not that of the genesis file")
    record = anchor_record_encoding(b.sender, b.tag, b.tx_hash)
    if not jmt_verify(b.state_proof, ANCHOR_PREFIX + b.digest, record, b.root):
        raise Refused("state-proof", "the state proof does not prove the anchor record")
    if not jmt_verify(b.genesis_proof, GENESIS_KEY, b.genesis_digest, b.root):
        raise Refused("genesis-proof", "the genesis proof does not prove the genesis digest")
    hs = b.headers
    if not hs:
        raise Refused("no-headers", "the bundle has no headers")
    if hs[0]["state"]["height"] != b.height or hs[0]["state"]["root"] != b.root:
        raise Refused("state-not-committed", "header 0 does not hold the bundle's state")
    for i, h in enumerate(hs):
        if h["chain_id"] != b.chain_id:
            raise Refused("other-chain", "header %d is of another chain" % i, i)
    for i in range(1, len(hs)):
        if hs[i]["parent_id"] != header_id(hs[i - 1]):
            raise Refused("unlinked", "header %d does not link to header %d" % (i, i - 1), i)
    for i, h in enumerate(hs):
        if h["state"]["height"] >= h["height"] or (i >= 1 and h["height"] != hs[i - 1]["height"] + 1):
            raise Refused("height", "header %d has a wrong height" % i, i)
    for i, h in enumerate(hs):
        bad = h["round"] == 0
        if not bad and i >= 1:
            prev = hs[i - 1]
            same = h["epoch"] == prev["epoch"] and h["round"] > prev["round"]
            bad = not (same or h["epoch"] == prev["epoch"] + 1)
        if bad:
            raise Refused("round", "header %d has a wrong round or epoch" % i, i)
    last = hs[-1]
    qc = b.commit_qc
    vd = qc["vote_data"]
    if (not commits(vd, header_id(last)) or vd["parent_round"] != last["round"]
            or vd["height"] != last["height"] + 1):
        raise Refused("not-committed", "the certificate does not commit the last header")
    if vd["epoch"] != last["epoch"]:
        raise Refused("epoch-mismatch", "the certificate's epoch is not the last header's")
    if len(b.epoch_changes) != vd["epoch"]:
        raise Refused("epoch-changes", "%d epoch changes for a certificate of epoch %d"
                      % (len(b.epoch_changes), vd["epoch"]))
    committee = g.committee
    for i, p in enumerate(b.epoch_changes):
        nxt, why = verify_epoch_change(p, b.chain_id, i, committee)
        if nxt is None:
            raise Refused("epoch-change", "epoch change %d: %s" % (i, why), i)
        committee = nxt
    why = verify_qc(qc, b.chain_id, committee)
    if why is not None:
        raise Refused("commit-cert", "the commit certificate: %s" % why)
    return {
        "valid": True,
        "chain_id": b.chain_id,
        "digest": b.digest.hex(),
        "tag": b.tag,
        "sender": b.sender.hex(),
        "tx_hash": b.tx_hash.hex(),
        "state_height": b.height,
        "epoch": vd["epoch"],
        "signers": len(signer_indices(qc["signers"])),
        "committee_size": len(committee),
    }


def verdict_for_text(genesis, text):
    """The verdict on a bundle (a str) against a parsed genesis file."""
    try:
        try:
            b = parse_bundle(text)
        except Malformed as e:
            return refused_verdict("malformed", e.reason, None, e.field)
        try:
            return verify_bundle(b, genesis)
        except Refused as e:
            return refused_verdict(e.link, e.reason, e.index)
    except Exception as e:  # a bug here: say so, rather than guess a verdict or stop a batch
        import traceback
        traceback.print_exc(file=sys.stderr)
        return refused_verdict("internal-error", "a bug in this verifier: %r" % e)


def load_genesis_file(path):
    """A Genesis, or a refused verdict (link genesis-file)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return refused_verdict("genesis-file", "cannot read the genesis file: %s" % e)
    try:
        return parse_genesis(data)
    except GenesisError as e:
        return refused_verdict("genesis-file", "the genesis file is unusable: %s" % e)


def verify_files(bundle_path, genesis_path):
    g = load_genesis_file(genesis_path)
    if isinstance(g, dict):
        return g
    try:
        with open(bundle_path, "rb") as f:
            data = f.read()
    except OSError as e:
        return refused_verdict("bundle-file", "cannot read the bundle: %s" % e)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return refused_verdict("bundle-file", "the bundle is not UTF-8")
    return verdict_for_text(g, text)


# ---------------------------------------------------------------------------------------------
# The command line


def json_line(v):
    return json.dumps(v, ensure_ascii=True, separators=(",", ":"))


def text_line(v):
    if v["valid"]:
        return ("VALID: digest %s anchored on chain %s by %s (tag %s, tx %s) in the state at "
                "height %d, committed in epoch %d by %d of %d validators"
                % (v["digest"], json.dumps(v["chain_id"]), v["sender"], json.dumps(v["tag"]),
                   v["tx_hash"], v["state_height"], v["epoch"], v["signers"],
                   v["committee_size"]))
    where = "" if v["index"] is None else " (index %d)" % v["index"]
    field = "" if v["field"] is None else " [field %s]" % v["field"]
    return "INVALID: %s%s%s: %s" % (v["link"], where, field, v["reason"])


def run_batch(inp, out):
    genesis_cache = {}
    for line in inp:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            gpath = req["genesis"]
            text = req["bundle"]
            if type(gpath) is not str or type(text) is not str:
                raise ValueError("genesis and bundle must be strings")
        except (ValueError, KeyError, TypeError) as e:
            out.write(json_line(refused_verdict("bundle-file", "a bad batch line: %s" % e)) + "\n")
            continue
        g = genesis_cache.get(gpath)
        if g is None:
            g = load_genesis_file(gpath)
            genesis_cache[gpath] = g
        if isinstance(g, dict):
            v = g
        else:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                v = refused_verdict("bundle-file", "the bundle is not UTF-8")
            else:
                v = verdict_for_text(g, text)
        out.write(json_line(v) + "\n")
    out.flush()
    return 0


def essence(v):
    if v["valid"]:
        return {"valid": True}
    return {"valid": False, "link": v["link"], "index": v["index"]}


def run_vectors(manifest_path, out):
    with open(manifest_path, "rb") as f:
        m = strict_json(f.read().decode("utf-8"))
    if m.get("format") != VECTORS_FORMAT:
        out.write("the manifest's format is %r, not %s\n" % (m.get("format"), VECTORS_FORMAT))
        return 2
    base = os.path.dirname(os.path.abspath(manifest_path))
    failures = 0
    vectors = m["vectors"]
    for vec in vectors:
        v = verify_files(os.path.join(base, vec["bundle"]), os.path.join(base, vec["genesis"]))
        got = essence(v)
        if got == vec["expect"]:
            out.write("ok    %s: %s\n" % (vec["name"], json_line(got)))
        else:
            failures += 1
            out.write("FAIL  %s: expected %s, got %s (%s)\n"
                      % (vec["name"], json_line(vec["expect"]), json_line(got),
                         v.get("reason", "")))
    out.write("%d vectors, %d passed, %d failed\n" % (len(vectors), len(vectors) - failures, failures))
    return 1 if failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Verify a Trellis anchor proof bundle (docs/proof-format.md, format v2).")
    ap.add_argument("--bundle", help="the bundle file")
    ap.add_argument("--genesis", help="the chain's genesis file")
    ap.add_argument("--json", action="store_true", help="print one JSON verdict line")
    ap.add_argument("--batch", action="store_true",
                    help='read {"genesis": PATH, "bundle": TEXT} lines on stdin')
    ap.add_argument("--vectors", metavar="MANIFEST", help="check the test vectors of a manifest")
    args = ap.parse_args(argv)
    if args.batch:
        return run_batch(sys.stdin, sys.stdout)
    if args.vectors:
        return run_vectors(args.vectors, sys.stdout)
    if not args.bundle or not args.genesis:
        ap.error("--bundle and --genesis are required")
    v = verify_files(args.bundle, args.genesis)
    sys.stdout.write((json_line(v) if args.json else text_line(v)) + "\n")
    sys.stdout.flush()
    return exit_code(v)


if __name__ == "__main__":
    sys.exit(main())
