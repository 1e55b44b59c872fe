"""The Kubo RPC client against a real daemon (py-ipfs-lite 0.1.1, started by the fixture).

py-ipfs-lite always imports like ``ipfs add --cid-version=1`` (raw leaves, 256 KiB chunks, balanced
layout, 174 links), whatever options it is sent. Its CIDs equal ddval's (and Kubo's) for files of
1 to 174 chunks. They differ when a balanced-layout node would have a single child, which Kubo keeps
and py-ipfs-lite's ``balanced_layout`` collapses into its parent: the first such file has
174 + 1 = 175 chunks (43.5 MiB + 1 byte), then 2*174 + 1, ... and 174**2 + 1 chunks. ddval follows
Kubo (``test_ipfs.py`` checks it against the JS reference importer); the client refuses the
daemon's CID for such files with an :class:`~ddval.economy.ipfs.IPFSError` naming both CIDs.
"""

from __future__ import annotations

import random

import pytest

from ddval.economy import ipfs, unixfs

pytestmark = pytest.mark.ipfs


@pytest.fixture(scope="module")
def client(ipfs_daemon):
    return ipfs.KuboClient(ipfs_daemon, cid_version=1)


@pytest.mark.parametrize("size", [0, 1, 22, ipfs.CHUNK_SIZE, ipfs.CHUNK_SIZE + 1, 3 * ipfs.CHUNK_SIZE + 5])
def test_daemon_cids_equal_the_embedded_store(client, size):
    data = random.Random(size).randbytes(size)
    cid = client.add(data, f"{size}.bin")
    assert cid == ipfs.EmbeddedStore(cid_version=1).add(data)
    assert client.cat(cid) == data
    client.pin(cid)


def test_files_pinned_by_the_flow_round_trip(client, tmp_path):
    import numpy as np

    path = tmp_path / "features.npz"
    np.savez(path, train_x=np.arange(120_000, dtype=np.float32).reshape(1000, 120))
    data = path.read_bytes()
    assert len(data) > ipfs.CHUNK_SIZE  # multi-chunk
    cid = client.add(data, "features.npz")
    assert cid == ipfs.cid_of(data, 1)
    assert client.cat(cid) == data


def test_daemon_ignores_cid_version_0_and_the_client_says_so(ipfs_daemon):
    v0 = ipfs.KuboClient(ipfs_daemon, cid_version=0)
    with pytest.raises(ipfs.IPFSError, match=r"returned CID bafk.* give Qm"):
        v0.add(b"Mary had a little lamb")


def collapsed_cid(data: bytes) -> str:
    """CIDv1 of ``data`` with py-ipfs-lite's layout: balanced, but a lone child replaces its parent."""
    blocks: dict[str, bytes] = {}
    chunks = [data[i : i + ipfs.CHUNK_SIZE] for i in range(0, len(data), ipfs.CHUNK_SIZE)]
    level = [unixfs._leaf(c, 1, blocks) for c in chunks]
    while len(level) > 1:
        groups = [level[i : i + ipfs.MAX_LINKS] for i in range(0, len(level), ipfs.MAX_LINKS)]
        level = [g[0] if len(g) == 1 else unixfs._inner(g, 1, blocks) for g in groups]
    return str(level[0].cid)


def test_py_ipfs_lite_collapses_single_child_nodes_where_kubo_does_not(client):
    data = random.Random(5).randbytes(ipfs.MAX_LINKS * ipfs.CHUNK_SIZE + 1)  # 175 chunks
    kubo = ipfs.cid_of(data, 1)
    lite = collapsed_cid(data)
    assert lite != kubo
    with pytest.raises(ipfs.IPFSError) as info:
        client.add(data, "175-chunks.bin")
    assert f"returned CID {lite}" in str(info.value) and f"give {kubo}" in str(info.value)
    # 174 chunks: one full level, no lone child, the same CID
    full = data[: ipfs.MAX_LINKS * ipfs.CHUNK_SIZE]
    assert client.add(full, "174-chunks.bin") == ipfs.cid_of(full, 1) == collapsed_cid(full)


def test_cat_rejects_bytes_that_do_not_hash_to_the_cid(client, monkeypatch):
    cid = client.add(b"genuine", "genuine.txt")
    monkeypatch.setattr(client._client, "cat", lambda *a, **k: b"forged!")
    with pytest.raises(ipfs.IntegrityError):
        client.cat(cid)
