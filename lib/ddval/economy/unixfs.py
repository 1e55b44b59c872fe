"""Content addressing as Kubo (go-ipfs) does it: CIDs and the UnixFS DAG of ``ipfs add``.

``import_bytes`` turns bytes into the UnixFS DAG that ``ipfs add`` builds with Kubo's defaults:
fixed 256 KiB chunks (``size-262144``), the *balanced* layout with at most 174 links per node,
sha2-256, and

- ``cid_version=0`` (``ipfs add``): dag-pb leaves holding UnixFS ``File`` nodes, base58btc ``Qm...``;
- ``cid_version=1`` (``ipfs add --cid-version=1``, which implies ``--raw-leaves``): raw leaves,
  dag-pb inner nodes, base32 ``bafy.../bafk...``. This is ddval's default, because it is also
  what the py-ipfs-lite daemon produces.

A file of one chunk is that chunk's leaf; more chunks hang under inner UnixFS ``File`` nodes
(``filesize`` + ``blocksizes``; link ``Tsize`` = cumulative block bytes). The balanced layout
never collapses a parent with a single child (Kubo's ``fillNodeRec``), which matters for
174k + 1 chunks (see ``tests/economy/test_ipfs_daemon.py``).

``read_dag`` reads a file back block by block and checks every block against its CID
(:class:`IntegrityError`). The stores that hold the blocks are in :mod:`ddval.economy.ipfs`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174
CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
SHA2_256 = 0x12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IPFSError(RuntimeError):
    """The IPFS endpoint cannot be used, or it disagrees with ddval's content addressing."""


class IntegrityError(IPFSError):
    """Bytes read back do not hash to the CID they were requested by."""


# ---------------------------------------------------------------------------- encodings


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise IntegrityError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _field(number: int, payload: bytes) -> bytes:  # length-delimited protobuf field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _uint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        if ch not in _B58:
            raise ValueError(f"{ch!r} is not base58btc")
        n = n * 58 + _B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


@dataclass(frozen=True)
class CID:
    """A sha2-256 CID: ``version`` 0 or 1, ``codec`` (0x55 raw, 0x70 dag-pb) and the digest."""

    version: int
    codec: int
    digest: bytes

    @property
    def multihash(self) -> bytes:
        return bytes([SHA2_256, 32]) + self.digest

    def to_bytes(self) -> bytes:
        """Binary CID (CIDv0: the multihash; CIDv1: version, codec, multihash)."""
        if self.version == 0:
            return self.multihash
        return _varint(1) + _varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return _b58encode(self.multihash)
        return "b" + base64.b32encode(self.to_bytes()).decode().lower().rstrip("=")

    @classmethod
    def parse(cls, text: str | bytes) -> "CID":
        """Parse a textual (``Qm...``, ``b...``) or binary CID; sha2-256 only."""
        try:
            if isinstance(text, (bytes, bytearray)):
                raw = bytes(text)
            elif text.startswith("Qm") and len(text) == 46:
                raw = _b58decode(text)
            elif text.startswith("b"):
                body = text[1:].upper()
                raw = base64.b32decode(body + "=" * (-len(body) % 8))
            else:
                raise ValueError("not a CIDv0 (Qm...) or base32 CIDv1 (b...)")
            if raw[:2] == bytes([SHA2_256, 32]) and len(raw) == 34:
                return cls(0, CODEC_DAG_PB, raw[2:])
            version, pos = _read_varint(raw, 0)
            codec, pos = _read_varint(raw, pos)
            if version != 1 or raw[pos : pos + 2] != bytes([SHA2_256, 32]) or len(raw) != pos + 34:
                raise ValueError("only sha2-256 CIDv1 are supported")
            return cls(1, codec, raw[pos + 2 :])
        except (ValueError, IntegrityError) as exc:
            raise IPFSError(f"invalid CID {text!r}: {exc}") from None


def _cid_for(block: bytes, version: int, codec: int) -> CID:
    return CID(version, codec, hashlib.sha256(block).digest())


# ---------------------------------------------------------------------------- UnixFS / dag-pb


def _unixfs_file(data: bytes | None, filesize: int, blocksizes: list[int]) -> bytes:
    # UnixFS Data: Type=File(2) [, Data] , filesize [, blocksizes...] (proto2, unpacked repeated)
    out = _uint_field(1, 2)
    if data:
        out += _field(2, data)
    out += _uint_field(3, filesize)
    for size in blocksizes:
        out += _uint_field(4, size)
    return out


def _pb_node(links: list[tuple[bytes, int]], unixfs: bytes) -> bytes:
    # dag-pb canonical form: Links (field 2) first, then Data (field 1). Kubo always writes the
    # link Name (empty here) and Tsize.
    out = b""
    for cid_bytes, tsize in links:
        out += _field(2, _field(1, cid_bytes) + _field(2, b"") + _uint_field(3, tsize))
    return out + _field(1, unixfs)


@dataclass(frozen=True)
class _Node:
    cid: CID
    filesize: int  # bytes of file data under this node
    tsize: int  # bytes of all blocks under this node (Kubo's link Tsize)


def _leaf(chunk: bytes, version: int, blocks: dict[str, bytes]) -> _Node:
    if version == 0:
        block = _pb_node([], _unixfs_file(chunk, len(chunk), []))
        cid = _cid_for(block, 0, CODEC_DAG_PB)
    else:
        block = chunk
        cid = _cid_for(block, 1, CODEC_RAW)
    blocks[str(cid)] = block
    return _Node(cid, len(chunk), len(block))


def _inner(children: list[_Node], version: int, blocks: dict[str, bytes]) -> _Node:
    unixfs = _unixfs_file(None, sum(c.filesize for c in children), [c.filesize for c in children])
    block = _pb_node([(c.cid.to_bytes(), c.tsize) for c in children], unixfs)
    cid = _cid_for(block, version, CODEC_DAG_PB)
    blocks[str(cid)] = block
    return _Node(cid, sum(c.filesize for c in children), len(block) + sum(c.tsize for c in children))


def import_bytes(
    data: bytes, cid_version: int = 1, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS
) -> tuple[str, dict[str, bytes]]:
    """The root CID and all blocks (``{cid: block}``) of ``data`` as Kubo's ``ipfs add`` builds them."""
    if cid_version not in (0, 1):
        raise ValueError(f"cid_version must be 0 or 1, got {cid_version}")
    blocks: dict[str, bytes] = {}
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    leaves = iter([_leaf(c, cid_version, blocks) for c in chunks])
    remaining = [len(chunks)]

    def take_leaf() -> _Node:
        remaining[0] -= 1
        return next(leaves)

    def fill(first: _Node | None, depth: int) -> _Node:
        # Kubo's balanced.fillNodeRec: add children until the node is full or the data is done.
        children = [first] if first is not None else []
        while len(children) < max_links and remaining[0] > 0:
            children.append(take_leaf() if depth == 1 else fill(None, depth - 1))
        return _inner(children, cid_version, blocks)

    root = take_leaf()
    depth = 1
    while remaining[0] > 0:  # Kubo's balanced.Layout: grow the tree one level at a time
        root = fill(root, depth)
        depth += 1
    return str(root.cid), blocks


def cid_of(data: bytes, cid_version: int = 1) -> str:
    """The CID ``ipfs add [--cid-version=1]`` gives ``data`` with Kubo's default settings."""
    return import_bytes(data, cid_version)[0]


def read_dag(cid: str, get_block: Callable[[str], bytes]) -> bytes:
    """Reassemble a UnixFS file from blocks, checking every block against its CID."""
    return b"".join(_read(CID.parse(cid), get_block))


def _read(cid: CID, get_block: Callable[[str], bytes]) -> list[bytes]:
    block = get_block(str(cid))
    if hashlib.sha256(block).digest() != cid.digest:
        raise IntegrityError(f"block {cid} does not hash to its CID")
    if cid.codec == CODEC_RAW:
        return [block]
    if cid.codec != CODEC_DAG_PB:
        raise IPFSError(f"block {cid}: unsupported codec 0x{cid.codec:x}")
    links, unixfs = _parse_pb_node(block)
    data, filesize = _parse_unixfs_file(unixfs, cid)
    parts = [data] if data else []
    for link in links:
        parts += _read(CID.parse(link), get_block)
    if sum(map(len, parts)) != filesize:
        raise IntegrityError(f"block {cid}: UnixFS filesize {filesize} does not match its content")
    return parts


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            out.append((number, buf[pos : pos + length]))
            pos += length
        else:
            raise IntegrityError(f"unsupported protobuf wire type {wire}")
    return out


def _parse_pb_node(block: bytes) -> tuple[list[bytes], bytes]:
    links, data = [], b""
    for number, value in _fields(block):
        if number == 2:
            links += [v for n, v in _fields(value) if n == 1]  # type: ignore[arg-type]
        elif number == 1:
            data = value  # type: ignore[assignment]
    return links, data


def _parse_unixfs_file(unixfs: bytes, cid: CID) -> tuple[bytes, int]:
    fields = dict((n, v) for n, v in _fields(unixfs) if n in (1, 2, 3))
    if fields.get(1) not in (0, 2):  # Raw or File
        raise IPFSError(f"block {cid} is not a UnixFS file (type {fields.get(1)})")
    data = fields.get(2, b"")
    return data, int(fields.get(3, len(data)))  # type: ignore[arg-type]
