"""Where batch files, their reports, quarantine and the server's logs are kept: one storage adapter.

``MLOPS_STORE_URL`` chooses it. Unset, it is the folder ``MLOPS_HOME`` (every location is an
absolute local path, files are written to a hidden temporary name and renamed into place). Set to
``s3://bucket/prefix``, every file is an object under that prefix (locations are ``s3://`` URLs),
written with one ``PUT`` (S3 makes an object visible whole or not at all). The S3 endpoint comes
from ``MLOPS_S3_ENDPOINT_URL`` (MinIO, moto) or boto3's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` ...), so workers on several machines see the same files.

Keys are relative, ``/``-separated: ``landing/<dataset>/<sha256>.csv``,
``processed/<dataset>/<sha256>.report.json``, ``reports/<dataset>/<sha12>/<plot>.png``. Readers
that need a file on disk (polars' scans, Great Expectations) get one from :meth:`Store.local_path`:
the file itself on the local store, a download on S3, cached under the object's ETag (one ``HEAD``
per read), so a replaced object (a dataset registered again) is never read from a stale copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from typing_extensions import override

from mlops_core.errors import LandingError
from mlops_core.settings import Settings

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Staged:
    """A file copied out of the submitter's hands, hashed on the way, not yet in the store."""

    path: Path
    sha256: str
    size: int


class Store(Protocol):
    """What every backend offers; keys are relative ``/``-separated names."""

    url: str

    def location(self, key: str) -> str:
        """The location a person and the ledger see for ``key`` (a path, or an ``s3://`` URL)."""
        ...

    def key(self, location: str) -> str:
        """The key of a location this store gave out."""
        ...

    def stage(self, source: Path, folder: str) -> Staged:
        """Copy ``source`` aside (beside ``folder`` where that makes the commit a rename)."""
        ...

    def commit(self, staged: Staged, key: str) -> None:
        """Put a staged file at ``key``, atomically."""
        ...

    def discard(self, staged: Staged) -> None:
        """Forget a staged file that was not committed; never fails."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The bytes at ``key``; ``FileNotFoundError`` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""
        ...

    def move(self, source: str, target: str) -> None:
        """Move the file at key ``source`` to key ``target`` (a rename, or copy then delete)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if it is there."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix), sorted."""
        ...

    def local_path(self, location: str) -> Path:
        """A file on this machine with the content at ``location``."""
        ...


def _copy_hashing(source: Path, target: Path) -> Staged:
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as reader, target.open("wb") as writer:
        for chunk in iter(lambda: reader.read(_CHUNK), b""):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return Staged(target, digest.hexdigest(), size)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class LocalStore(Store):
    """Files under one local folder; a write is a temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = str(self.root)

    @override
    def location(self, key: str) -> str:
        return str(self.root / key)

    @override
    def key(self, location: str) -> str:
        path = Path(location).resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            raise LandingError(
                f"{location} is outside the store {self.root}",
                hint="MLOPS_STORE_URL (or MLOPS_HOME) changed since this file was recorded",
            ) from None

    @override
    def stage(self, source: Path, folder: str) -> Staged:
        target_folder = self.root / folder
        target_folder.mkdir(parents=True, exist_ok=True)
        target = target_folder / f".incoming-{uuid.uuid4().hex}.tmp"
        try:
            return _copy_hashing(source, target)
        except BaseException:
            _unlink(target)
            raise

    @override
    def commit(self, staged: Staged, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)

    @override
    def discard(self, staged: Staged) -> None:
        _unlink(staged.path)

    @override
    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            staged.write_bytes(data)
            os.replace(staged, target)
        finally:
            _unlink(staged)

    @override
    def get_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    @override
    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    @override
    def move(self, source: str, target: str) -> None:
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / source, self.root / target)

    @override
    def delete(self, key: str) -> None:
        _unlink(self.root / key)

    @override
    def list(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    @override
    def local_path(self, location: str) -> Path:
        return Path(location)


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``; a write is one ``PUT``, a move a copy then a delete."""

    def __init__(self, url: str, endpoint_url: str | None) -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(url)
        if not parsed.netloc:
            raise LandingError(
                f"MLOPS_STORE_URL {url!r} names no bucket",
                hint="use s3://BUCKET or s3://BUCKET/PREFIX",
            )
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        self.cache = Path(tempfile.gettempdir()) / f"mlops-store-cache-{os.getuid()}"

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @override
    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object(key)}"

    @override
    def key(self, location: str) -> str:
        head = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"
        if not location.startswith(head):
            raise LandingError(
                f"{location} is outside the store {self.url}",
                hint="MLOPS_STORE_URL changed since this file was recorded",
            )
        return location[len(head) :]

    @override
    def stage(self, source: Path, folder: str) -> Staged:
        handle, name = tempfile.mkstemp(prefix="mlops-incoming-", suffix=".tmp")
        os.close(handle)
        try:
            return _copy_hashing(source, Path(name))
        except BaseException:
            _unlink(Path(name))
            raise

    @override
    def commit(self, staged: Staged, key: str) -> None:
        self.client.upload_file(str(staged.path), self.bucket, self._object(key))

    @override
    def discard(self, staged: Staged) -> None:
        _unlink(staged.path)

    @override
    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    @override
    def get_bytes(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(self.location(key)) from None
        return bytes(answer["Body"].read())

    @override
    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    @override
    def move(self, source: str, target: str) -> None:
        self.client.copy(
            {"Bucket": self.bucket, "Key": self._object(source)}, self.bucket, self._object(target)
        )
        self.delete(source)

    @override
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    @override
    def list(self, prefix: str) -> list[str]:
        found = []
        start = self._object(prefix.rstrip("/") + "/")
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        ):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) + 1 :] if self.prefix else item["Key"]
                found.append(key)
        return sorted(found)

    @override
    def local_path(self, location: str) -> Path:
        from botocore.exceptions import ClientError

        key = self.key(location)
        try:  # the object's ETag names its content: a cached copy of another content is not used
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise FileNotFoundError(location) from None
            raise
        version = hashlib.sha256(f"{location}\n{head.get('ETag', '')}".encode()).hexdigest()
        cached = self.cache / version[:32] / Path(key).name
        if cached.is_file():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        staged = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.client.download_file(self.bucket, self._object(key), str(staged))
            os.replace(staged, cached)
        finally:
            _unlink(staged)
        return cached


_STORES: dict[tuple[str, str | None, int], Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(settings: Settings) -> Store:
    """This process's store for ``settings`` (one per URL: S3 clients are slow to build)."""
    url = settings.store_url or str(settings.home.resolve())
    key = (url, settings.s3_endpoint_url, os.getpid())
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            scheme = urlparse(url).scheme
            if scheme == "s3":
                store = S3Store(url, settings.s3_endpoint_url)
            elif scheme in {"", "file"}:
                store = LocalStore(Path(urlparse(url).path if scheme == "file" else url))
            else:
                raise LandingError(
                    f"MLOPS_STORE_URL {url!r}: the scheme {scheme!r} is not supported",
                    hint="use a local folder or s3://BUCKET/PREFIX",
                )
            _STORES[key] = store
        return store


def write_json(store: Store, key: str, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically, so a reader never sees half a report."""
    store.put_bytes(key, json.dumps(payload, indent=2, default=str).encode("utf-8"))


def read_json(store: Store, location: str) -> Any:
    """The JSON document at ``location``."""
    return json.loads(store.get_bytes(store.key(location)).decode("utf-8"))
