"""Where uploaded files (owners' photos, issue 15) are kept: a storage interface with two
implementations, chosen by configuration.

- `FolderStorage` (the embedded default): a folder under the data directory.
- `S3Storage` (production): any S3-compatible store (AWS S3, MinIO, Ceph, OSS with S3
  API), through boto3, installed with the `s3` extra (`pip install estatedesk[s3]`).

`ESTATEDESK_FILE_STORE` selects it: unset or `folder` → `<data dir>/files`;
`s3://bucket/prefix` → S3 (endpoint and credentials from `ESTATEDESK_S3_ENDPOINT` and
boto3's usual environment variables).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Protocol

KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")


class FileStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...


def _checked(key: str) -> str:
    if not KEY.match(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


class FolderStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(path.suffix + ".part")
            temporary.write_bytes(data)
            temporary.replace(path)  # a reader never sees half a file

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        """Raises FileNotFoundError for an unknown key."""
        return await asyncio.to_thread(self._path(key).read_bytes)


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None):
        import boto3  # the `s3` extra; only production installs it

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_checked(key)}" if self.prefix else _checked(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                                ContentType=content_type)

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except self.client.exceptions.NoSuchKey:
                raise FileNotFoundError(key) from None

        return await asyncio.to_thread(read)


def file_store_from_env(data_dir: Path, env: dict[str, str] | None = None) -> FileStore:
    env = dict(os.environ if env is None else env)
    spec = env.get("ESTATEDESK_FILE_STORE", "folder")
    if spec == "folder":
        return FolderStorage(Path(data_dir) / "files")
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        return S3Storage(bucket, prefix, env.get("ESTATEDESK_S3_ENDPOINT") or None)
    raise SystemExit(f"ESTATEDESK_FILE_STORE must be 'folder' or 's3://bucket/prefix', not {spec!r}")
