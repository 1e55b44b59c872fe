"""Where ddval's artifacts live: an embedded content store and a Kubo RPC client, one interface.

Both address content as Kubo does (:mod:`ddval.economy.unixfs`, whose names are re-exported here).
Integrity: every read (:meth:`EmbeddedStore.cat`, :meth:`KuboClient.cat`) recomputes the CID of
the bytes it returns and raises :class:`IntegrityError` on a mismatch, so a corrupted block or a
lying daemon is caught. The embedded store also checks every block against its CID.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ddval.economy.chain import redact_url
from ddval.economy.unixfs import (
    CHUNK_SIZE,
    CID,
    CODEC_DAG_PB,
    CODEC_RAW,
    MAX_LINKS,
    SHA2_256,
    IntegrityError,
    IPFSError,
    cid_of,
    import_bytes,
    read_dag,
)

__all__ = [
    "CHUNK_SIZE", "CID", "CODEC_DAG_PB", "CODEC_RAW", "MAX_LINKS", "SHA2_256", "ContentStore", "EmbeddedStore",
    "IPFSError", "IntegrityError", "KuboClient", "as_multiaddr", "cid_of", "import_bytes", "open_store", "read_dag",
]  # fmt: skip

# ---------------------------------------------------------------------------- stores


class ContentStore(Protocol):
    """What the economy needs from IPFS: add (returns the CID), cat (verified), pin."""

    def add(self, data: bytes, name: str = "") -> str: ...

    def cat(self, cid: str) -> bytes: ...

    def pin(self, cid: str) -> None: ...


class EmbeddedStore:
    """An in-process content-addressed block store with Kubo's CIDs.

    ``root=None`` keeps blocks in memory; otherwise they live in ``root/blocks/<cid>`` and pins in
    ``root/pins/<cid>`` (written atomically), so a later process can read what an earlier one added.
    """

    def __init__(self, root: str | os.PathLike | None = None, cid_version: int = 1):
        self.cid_version = cid_version
        self.root = Path(root) if root is not None else None
        self._blocks: dict[str, bytes] = {}
        self._pins: set[str] = set()
        if self.root is not None:
            (self.root / "blocks").mkdir(parents=True, exist_ok=True)
            (self.root / "pins").mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, name: str = "") -> str:
        """Store ``data``; return its CID. Adding pins, as ``ipfs add`` does by default."""
        cid, blocks = import_bytes(data, self.cid_version)
        for key, block in blocks.items():
            self._put(key, block)
        self.pin(cid)
        return cid

    def cat(self, cid: str) -> bytes:
        """The bytes of ``cid``; every block is checked against its CID."""
        return read_dag(cid, self._get)

    def pin(self, cid: str) -> None:
        """Pin ``cid`` (it must be stored)."""
        self._get(str(CID.parse(cid)))
        if self.root is None:
            self._pins.add(cid)
        else:
            from ddval.store import write_bytes

            write_bytes(self.root / "pins" / cid, b"")

    def pins(self) -> list[str]:
        """Pinned CIDs, sorted."""
        if self.root is None:
            return sorted(self._pins)
        return sorted(p.name for p in (self.root / "pins").iterdir() if not p.name.startswith("."))

    def _put(self, key: str, block: bytes) -> None:
        if self.root is None:
            self._blocks[key] = block
        else:
            path = self.root / "blocks" / key
            if not path.exists():
                from ddval.store import write_bytes

                write_bytes(path, block)

    def _get(self, key: str) -> bytes:
        try:
            return self._blocks[key] if self.root is None else (self.root / "blocks" / key).read_bytes()
        except (KeyError, FileNotFoundError):
            raise IPFSError(f"block {key} is not in the embedded store") from None


class KuboClient:
    """A client for a daemon's Kubo RPC API (``/api/v0``; kubo, or py-ipfs-lite's subset).

    ``api`` is a multiaddr (``/ip4/127.0.0.1/tcp/5001/http``) or URL (``http://127.0.0.1:5001``).
    ``add``/``cat``/``pin``/``version`` go through ``ipfshttpclient`` (0.8.0a2; its version gate
    is only a warning, silenced here because current daemons are all "too new" for it). The
    daemon's CID of every added file is compared with the locally computed one; a daemon that
    uses other settings (e.g. CIDv0 where v1 was asked for) is an :class:`IPFSError`. Only the
    scheme, host and port of a URL are used (:func:`as_multiaddr`); errors name the API by
    :func:`ddval.economy.chain.redact_url`, never with its user info, path or query.
    """

    def __init__(self, api: str, cid_version: int = 1, timeout: float = 30.0):
        import ipfshttpclient

        self.api = api if api.startswith("/") else redact_url(api if "://" in api else f"http://{api}")
        self.cid_version = cid_version
        self.timeout = timeout
        addr = as_multiaddr(api)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._client = ipfshttpclient.Client(addr, timeout=timeout)
        try:
            with _quiet():
                self.daemon_version = self._client.version()["Version"]
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts, HTTP errors
            raise IPFSError(f"cannot reach the IPFS RPC API at {self.api}: {type(exc).__name__}: {exc}") from None

    def add(self, data: bytes, name: str = "") -> str:
        """Add and pin ``data``; return the daemon's CID after checking it equals ddval's."""
        expected = cid_of(data, self.cid_version)
        opts = {
            "cid-version": str(self.cid_version),
            "raw-leaves": "true" if self.cid_version == 1 else "false",
            "chunker": f"size-{CHUNK_SIZE}",
            "hash": "sha2-256",
            "pin": "true",
        }
        try:
            with _quiet():
                got = self._client.add_bytes(data, opts=opts)
        except Exception as exc:  # noqa: BLE001
            raise IPFSError(f"IPFS add of {name or len(data)} bytes failed at {self.api}: {exc}") from None
        if got != expected:
            raise IPFSError(
                f"the daemon at {self.api} (version {self.daemon_version}) returned CID {got} for "
                f"{name or 'data'} ({len(data)} bytes), but Kubo's settings (cid-version={self.cid_version}, "
                f"size-{CHUNK_SIZE} chunks, balanced layout, {MAX_LINKS} links) give {expected}"
            )
        return got

    def cat(self, cid: str) -> bytes:
        """The bytes of ``cid`` from the daemon; rejected unless they hash back to ``cid``."""
        parsed = CID.parse(cid)
        try:
            with _quiet():
                data = self._client.cat(cid)
        except Exception as exc:  # noqa: BLE001
            raise IPFSError(f"IPFS cat {cid} failed at {self.api}: {exc}") from None
        if cid_of(data, parsed.version) != str(parsed):
            raise IntegrityError(f"the daemon at {self.api} returned bytes for {cid} that do not hash to it")
        return data

    def pin(self, cid: str) -> None:
        """Pin ``cid`` on the daemon (recursively)."""
        try:
            with _quiet():
                self._client.pin.add(cid)
        except Exception as exc:  # noqa: BLE001
            raise IPFSError(f"IPFS pin {cid} failed at {self.api}: {exc}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ipfshttpclient 0.8.0a2 passes urllib3 a deprecated argument on every request (FutureWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def as_multiaddr(api: str) -> str:
    """The multiaddr of an IPFS RPC API given as a multiaddr or URL.

    Args:
        api: ``/ip4/HOST/tcp/PORT/http`` (returned as it is) or ``http://HOST:PORT`` (``HOST:PORT``
            means ``http``); a URL's user info, path and query are dropped.

    Returns:
        ``/ip4|ip6|dns/HOST/tcp/PORT/SCHEME``.

    Raises:
        IPFSError: ``api`` has no host or no port (the message shows it redacted).
    """
    if api.startswith("/"):
        return api
    from urllib.parse import urlparse

    url = urlparse(api if "://" in api else f"http://{api}")
    if not url.hostname or not url.port:
        raise IPFSError(
            f"IPFS API address {redact_url(url.geturl())} must look like http://HOST:PORT or /ip4/HOST/tcp/PORT/http"
        )
    proto = "ip6" if ":" in url.hostname else ("ip4" if url.hostname.replace(".", "").isdigit() else "dns")
    return f"/{proto}/{url.hostname}/tcp/{url.port}/{url.scheme or 'http'}"


def open_store(ipfs_api: str | None, root: str | os.PathLike | None = None, cid_version: int = 1) -> ContentStore:
    """The embedded store (``ipfs_api=None``; on disk under ``root`` when given) or a daemon client."""
    if ipfs_api is None:
        return EmbeddedStore(root, cid_version)
    return KuboClient(ipfs_api, cid_version)
