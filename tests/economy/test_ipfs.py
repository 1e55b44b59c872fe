"""Kubo-compatible content addressing and the embedded store (no daemon needed).

Golden references: the CIDv0 vectors of Kubo's documentation (``ipfs add``), and the IPFS
project's JS importer (``ipfs-unixfs-importer``) configured like Kubo, for every tree shape.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddval.config import repo_root
from ddval.economy import ipfs

JS = Path(__file__).parent / "js" / "unixfs_cid.mjs"


def reference(tmp_path, blobs, chunk=ipfs.CHUNK_SIZE, links=ipfs.MAX_LINKS):
    files = []
    for i, blob in enumerate(blobs):
        files.append(str(tmp_path / f"blob{i}"))
        Path(files[-1]).write_bytes(blob)
    doc = json.dumps({"chunk": chunk, "links": links, "files": files})
    out = subprocess.run(["node", str(JS)], input=doc, capture_output=True, text=True, check=True, cwd=repo_root())
    return json.loads(out.stdout)


def test_kubo_documented_vectors():
    assert ipfs.cid_of(b"Mary had a little lamb", 0) == "QmZfF6C9j4VtoCsTp4KSrhYH47QMd3DNXVZBKaxJdhaPab"
    assert ipfs.cid_of(b"", 0) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    # CIDv1 of a single chunk is the raw block: sha2-256 of the bytes (bafkrei...)
    assert ipfs.cid_of(b"", 1) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_kubo_defaults_equal_the_js_reference(tmp_path):
    rng = random.Random(1)
    c = ipfs.CHUNK_SIZE
    sizes = [0, 1, 22, c - 1, c, c + 1, 3 * c + 5]
    blobs = [rng.randbytes(n) for n in sizes]
    for size, blob, ref in zip(sizes, blobs, reference(tmp_path, blobs)):
        assert ipfs.cid_of(blob, 0) == ref["v0"], f"CIDv0 of {size} bytes"
        assert ipfs.cid_of(blob, 1) == ref["v1"], f"CIDv1 of {size} bytes"


def test_balanced_layout_shapes_equal_the_js_reference(tmp_path):
    """With 1-byte chunks and 3 links per node every size is a different tree shape (up to depth 4),
    including the parents with a single child that Kubo keeps (e.g. 4, 10, 28 chunks)."""
    rng = random.Random(2)
    sizes = list(range(0, 30)) + [81, 82, 83]
    blobs = [rng.randbytes(n) for n in sizes]
    for size, blob, ref in zip(sizes, blobs, reference(tmp_path, blobs, chunk=1, links=3)):
        assert ipfs.import_bytes(blob, 0, chunk_size=1, max_links=3)[0] == ref["v0"], f"CIDv0, {size} chunks"
        assert ipfs.import_bytes(blob, 1, chunk_size=1, max_links=3)[0] == ref["v1"], f"CIDv1, {size} chunks"


def test_cid_parse_round_trip():
    for version in (0, 1):
        cid = ipfs.cid_of(b"x" * 300_000, version)
        parsed = ipfs.CID.parse(cid)
        assert str(parsed) == cid and str(ipfs.CID.parse(parsed.to_bytes())) == cid
    for bad in ("", "Qm123", "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA", "bafy!!"):
        with pytest.raises(ipfs.IPFSError):
            ipfs.CID.parse(bad)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 700), st.integers(2, 5), st.sampled_from([0, 1]))
def test_store_round_trip_any_shape(data, chunk, links, version):
    cid, blocks = ipfs.import_bytes(data, version, chunk_size=chunk, max_links=links)
    assert ipfs.read_dag(cid, blocks.__getitem__) == data


@pytest.mark.parametrize("version", [0, 1])
def test_embedded_store_on_disk_round_trip_and_pins(tmp_path, version):
    store = ipfs.EmbeddedStore(tmp_path / "ipfs", cid_version=version)
    data = random.Random(3).randbytes(2 * ipfs.CHUNK_SIZE + 17)
    cid = store.add(data, "model.pt")
    assert cid == ipfs.cid_of(data, version)
    assert ipfs.EmbeddedStore(tmp_path / "ipfs", cid_version=version).cat(cid) == data  # another process
    assert store.pins() == [cid]


def test_corrupted_block_is_detected(tmp_path):
    store = ipfs.EmbeddedStore(tmp_path / "ipfs")
    data = random.Random(4).randbytes(3 * ipfs.CHUNK_SIZE)
    cid = store.add(data)
    _, blocks = ipfs.import_bytes(data, 1)
    leaf = next(k for k, v in blocks.items() if k != cid)
    path = tmp_path / "ipfs" / "blocks" / leaf
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    with pytest.raises(ipfs.IntegrityError, match=leaf):
        store.cat(cid)


def test_unknown_cid_is_a_clear_error():
    with pytest.raises(ipfs.IPFSError, match="not in the embedded store"):
        ipfs.EmbeddedStore().cat(ipfs.cid_of(b"never added"))


def test_unreachable_daemon_is_a_clear_error():
    from econ_helpers import free_port

    with pytest.raises(ipfs.IPFSError, match="cannot reach the IPFS RPC API"):
        ipfs.KuboClient(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_ipfs_errors_and_attester_commands_never_show_credentials():
    """Issue 12 / 17 item 9: an endpoint's user info, path or query may hold an API key."""
    from econ_helpers import free_port

    port = free_port()
    secret = f"http://user:SECRET@127.0.0.1:{port}/api/v0?token=ALSO-SECRET"
    with pytest.raises(
        ipfs.IPFSError, match=rf"^cannot reach the IPFS RPC API at http://127.0.0.1:{port}/<redacted>: "
    ):
        try:
            ipfs.KuboClient(secret, timeout=2)
        except ipfs.IPFSError as exc:
            assert "SECRET" not in str(exc)
            raise
    assert ipfs.as_multiaddr(secret) == f"/ip4/127.0.0.1/tcp/{port}/http"
    assert ipfs.as_multiaddr("https://u:SECRET@ipfs.example.org:5001/x") == "/dns/ipfs.example.org/tcp/5001/https"
    with pytest.raises(ipfs.IPFSError, match=r"address https://ipfs.example.org/<redacted> must look like") as info:
        ipfs.as_multiaddr("https://u:SECRET@ipfs.example.org/x?key=SECRET")
    assert "SECRET" not in str(info.value)
