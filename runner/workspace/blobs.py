"""Where workspace file contents go: one small interface, two implementations.

- ``redis`` (the default): one hash per run, ``{ID}:blobs``, field = sha256. It carries
  the run's hash tag and is one of the run's keys, so it expires and is purged with the
  run (nothing to deploy, nothing to leak); content addressing works within a run.
- A URL (``file:///mnt/shared/ws``, ``s3://bucket/ws`` with s3fs installed, anything
  fsspec knows): ``URL/PREFIX/ID/ab/abcd...``. Removed with :meth:`Blobs.delete_run`.

A missing or damaged blob is a WorkspaceError naming it, never wrong content on disk.
:meth:`Blobs.get_many` checks every blob against its hash. :meth:`Blobs.fetch` is the
restore's read: chunks to write while the next one is on the wire, checked for presence
up front and left to the writer to check (see :func:`verified`): against the size the
manifest gives always, and against the hash unless the store is ``trusted``.

Why the run's own Redis hash is trusted: its blobs are written by the same fenced commit
that names them, in the same server as the manifest and the transcript. Whoever could
change a blob there could change the manifest entry and the transcript beside it, so
hashing 50 MB again on every restore (as long as the fetch itself on two cores) would
catch nothing the rest of the run is not equally open to; a truncated or mismatched
value still fails the size check. A directory or object store is another system, shared
and written by other hosts (a half-copied file, another tenant, a lifecycle rule): its
blobs are hashed before they are written, as a container runtime checks the layers it
pulls and not the ones it keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import redis

from runner.connection import connect
from runner.errors import BadInput, WorkspaceError
from runner.keys import Keys
from runner.settings import Settings

BATCH_BYTES = 4 * 1024 * 1024  # one pipeline of uploads at most this big
FETCH_BYTES = 1024 * 1024  # one restore read at most this big: written while the next comes
FETCH_BLOBS = 64  # and at most this many blobs: small files are many chunks, written at once
HASHERS = 2  # threads checking fetched blobs against their hashes
PARALLEL_FROM = 64  # blobs: fewer are checked in the calling thread
Progress = Callable[[int], None]  # called with the bytes just stored


class Blobs(Protocol):
    """Content-addressed storage of one run's workspace files.

    ``inline``: the run's commit script can store the blobs itself (they live in the
    run's own Redis hash), so a step's contents need no round trip of their own.
    ``trusted``: a restore checks what :meth:`fetch` gives by size only (the module
    docstring says when that is right).
    """

    inline: bool
    trusted: bool
    where: str  # what a message calls the store

    def put(self, blobs: Mapping[str, bytes], progress: Progress | None = None) -> None:
        """Store every blob (idempotent: a blob stored twice is stored once)."""

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The blobs by hash; WorkspaceError if one is missing or corrupt."""

    def fetch(self, wanted: Sequence[tuple[str, int]]) -> Iterator[dict[str, bytes]]:
        """The blobs of ``wanted`` (hash, size), in chunks, *unverified* (see ``verified``).

        A blob missing from the store is a WorkspaceError before the first chunk.
        """

    def delete_run(self) -> None:
        """Remove every blob of the run."""


def open_blobs(settings: Settings, client: Any, keys: Keys, run_id: str, ttl_ms: int = 0) -> Blobs:
    """The blob store of ``settings`` (RUNNER_WORKSPACE_STORE) for ``run_id``.

    ``client``: the caller's client on the configured server (its bytes twin is kept).
    """
    if settings.workspace_store == "redis":
        return RedisBlobs(bytes_client(settings, client), keys.blobs(run_id), ttl_ms)
    return FsspecBlobs(settings.workspace_store, keys.prefix, run_id)


_TWINS: weakref.WeakKeyDictionary[Any, redis.Redis] = weakref.WeakKeyDictionary()


def bytes_client(settings: Settings, client: Any) -> redis.Redis:
    """A non-decoding client (blobs are bytes) for the server of ``settings``, beside ``client``.

    Made by :func:`runner.connection.connect`, like every other client, so a Sentinel URL
    keeps asking the sentinels where the primary is, and TLS, timeouts and retries are the
    same. One per ``client``: a purge of many runs does not open a pool per run.
    """
    twin = _TWINS.get(client)
    if twin is None:
        twin = _TWINS[client] = connect(settings, decode=False, probe=False)
    return twin


def verified(
    digest: str, data: bytes | None, where: str, size: int | None = None, rehash: bool = True
) -> bytes:
    """``data`` if it has ``size`` bytes (when given) and hashes to ``digest`` (unless
    not ``rehash``); WorkspaceError otherwise."""
    if data is None:
        raise WorkspaceError(f"workspace blob {digest[:12]} is missing from {where}")
    if size is not None and len(data) != size:
        raise WorkspaceError(
            f"workspace blob {digest[:12]} in {where} is corrupt: "
            f"{len(data)} bytes where the manifest says {size}"
        )
    if rehash and hashlib.sha256(data).hexdigest() != digest:
        raise WorkspaceError(f"workspace blob {digest[:12]} in {where} is corrupt")
    return data


def verify_all(digests: list[str], values: list[bytes | None], where: str) -> dict[str, bytes]:
    """Each value checked against its digest (hashing releases the GIL: two at once)."""
    if len(digests) < PARALLEL_FROM:
        return {d: verified(d, v, where) for d, v in zip(digests, values, strict=True)}
    with ThreadPoolExecutor(HASHERS) as pool:
        checked = pool.map(
            lambda dv: verified(dv[0], dv[1], where), zip(digests, values, strict=True)
        )
        return dict(zip(digests, checked, strict=True))


def _chunks(wanted: Sequence[tuple[str, int]]) -> Iterator[list[str]]:
    """The hashes of ``wanted`` in runs of at most FETCH_BYTES and FETCH_BLOBS (one at least)."""
    chunk: list[str] = []
    size = 0
    for digest, n in wanted:
        if chunk and (size + n > FETCH_BYTES or len(chunk) >= FETCH_BLOBS):
            yield chunk
            chunk, size = [], 0
        chunk.append(digest)
        size += n
    if chunk:
        yield chunk


class RedisBlobs:
    """Blobs in a hash of the run's own (expires with the run)."""

    inline = True
    trusted = True  # written by the run's own fenced commits (the module docstring)
    where = "the run's Redis blobs"

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int = 0) -> None:
        self.redis: Any = client
        self.key = key
        self.ttl_ms = ttl_ms  # set by a submit: the run's create removes it again

    def put(self, blobs: Mapping[str, bytes], progress: Progress | None = None) -> None:
        batch: dict[str, bytes] = {}
        size = 0
        for digest, data in blobs.items():
            batch[digest] = data
            size += len(data)
            if size >= BATCH_BYTES:
                self._write(batch, size, progress)
                batch, size = {}, 0
        if batch:
            self._write(batch, size, progress)

    def _write(self, batch: dict[str, bytes], size: int, progress: Progress | None) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key, mapping=batch)
        if self.ttl_ms:
            pipe.pexpire(self.key, self.ttl_ms)
        pipe.execute()
        if progress is not None:
            progress(size)

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        values = self.redis.hmget(self.key, wanted)
        return verify_all(wanted, values, self.where)

    def fetch(self, wanted: Sequence[tuple[str, int]]) -> Iterator[dict[str, bytes]]:
        chunks = list(_chunks(wanted))
        if not chunks:
            return
        # One request in flight ahead, on a connection of its own: the server reads out
        # the next chunk while the caller writes this one (as fast as a fetching thread,
        # at a third less CPU: no interpreter lock changing hands). The presence of every
        # blob is checked in the first round trip: the hash's field names (this run's
        # blobs only, 64 bytes each) cost a tenth of asking for each in a script. A purged
        # store fails before anything is written.
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        drained = False
        try:
            conn.send_command("HKEYS", self.key)
            conn.send_command("HMGET", self.key, *chunks[0])
            held = {name.decode() for name in conn.read_response()}
            for digest, _ in wanted:
                if digest not in held:
                    gone = digest[:12]
                    raise WorkspaceError(f"workspace blob {gone} is missing from {self.where}")
            for i, chunk in enumerate(chunks):
                values = conn.read_response()
                if i + 1 < len(chunks):
                    conn.send_command("HMGET", self.key, *chunks[i + 1])
                yield dict(zip(chunk, values, strict=True))
            drained = True
        finally:
            if not drained:  # a reply may still be on its way: the connection is not reused
                conn.disconnect()
            pool.release(conn)

    def delete_run(self) -> None:
        self.redis.delete(self.key)


class FsspecBlobs:
    """Blobs as files under a directory or object-store URL (through fsspec)."""

    inline = False
    trusted = False

    def __init__(self, url: str, prefix: str, run_id: str) -> None:
        try:
            from fsspec.core import url_to_fs  # type: ignore[import-untyped]
        except ImportError:
            raise BadInput(
                "RUNNER_WORKSPACE_STORE is a URL: install fsspec (pip install 'runner[workspace]')"
            ) from None
        try:
            self.fs, root = url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise BadInput(f"RUNNER_WORKSPACE_STORE: {exc}") from exc
        self.root = f"{root.rstrip('/')}/{prefix}/{run_id}"
        self.where = url

    def _path(self, digest: str) -> str:
        return f"{self.root}/{digest[:2]}/{digest}"

    def put(self, blobs: Mapping[str, bytes], progress: Progress | None = None) -> None:
        for digest, data in blobs.items():
            path = self._path(digest)
            try:
                if not self.fs.exists(path):
                    self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                    tmp = f"{path}.tmp"
                    self.fs.pipe_file(tmp, data)
                    self.fs.mv(tmp, path)  # readers never see half a blob
            except OSError as exc:
                raise WorkspaceError(f"cannot store a blob in {self.where}: {exc}") from exc
            if progress is not None:
                progress(len(data))

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        return {d: verified(d, self._read(d), self.where) for d in sorted(set(digests))}

    def fetch(self, wanted: Sequence[tuple[str, int]]) -> Iterator[dict[str, bytes]]:
        if not wanted:
            return
        # One chunk: that a file is missing is only known by reading it, and a missing
        # blob must fail before anything is written.
        out: dict[str, bytes] = {}
        for digest, _ in wanted:
            data = self._read(digest)
            if data is None:
                raise WorkspaceError(f"workspace blob {digest[:12]} is missing from {self.where}")
            out[digest] = data
        yield out

    def _read(self, digest: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self._path(digest))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WorkspaceError(f"cannot read a blob from {self.where}: {exc}") from exc
        return data

    def delete_run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.root, recursive=True)
