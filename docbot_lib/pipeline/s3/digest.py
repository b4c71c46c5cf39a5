"""What makes an object identical to its file: the model folder's files, their SHA-256 and the CRC32 of each
upload part (cached by size and mtime, so a second run reads nothing), and the comparison with an object's.

Layer: pipeline, step `s3` (its digests): imports core.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docbot_lib.core.errors import (
    BadInput,
    NotFound,
)
from docbot_lib.pipeline.s3.bucket import recorded_part_size

MiB = 1 << 20


HASH_BLOCK = 8 * MiB


# -- local files and their digests -------------------------------------------------------------------
@dataclass(frozen=True)
class LocalFile:
    rel: str  # path inside the model folder, with "/"
    path: Path
    size: int
    mtime_ns: int


def model_files(model_dir: Path | str) -> list[LocalFile]:
    """The files of a model folder to upload, largest first (hidden files and folders left out).

    A missing or empty folder is a DocbotError that says to run 01-download-model.ipynb first."""
    folder = Path(model_dir).expanduser()
    fix = (
        "run 01-download-model.ipynb first (it downloads the model there), or set MODEL_DIR to the folder "
        "that holds the model files"
    )
    if not folder.is_dir():
        raise NotFound(f"the model folder {folder} does not exist", fix)
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        stat = path.stat()
        files.append(LocalFile(rel.as_posix(), path, stat.st_size, stat.st_mtime_ns))
    if not files:
        raise BadInput(f"the model folder {folder} is empty", fix)
    return sorted(files, key=lambda f: (-f.size, f.rel))


def part_size_for(size: int, part_size: int) -> int:
    """The part size s3transfer uses for a file of this size (0: one PUT, below the multipart threshold)."""
    from s3transfer.utils import ChunksizeAdjuster

    return 0 if size < part_size else ChunksizeAdjuster().adjust_chunksize(part_size, size)


@dataclass(frozen=True)
class Digest:
    sha256: str  # hex, of the whole file: the identity
    part_size: int  # 0 = one PUT
    crc32: str  # base64 (big-endian), what S3 reports: the file's CRC32, or the CRC32 of the parts' CRC32s
    parts: int


def _b64crc(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def _hash(path: Path, part_size: int, stop: threading.Event, on_bytes: Callable[[int], None]) -> Digest:
    """One read of the file: its SHA-256, and the CRC32 S3 reports for that part size."""
    sha, crc, crcs, in_part = hashlib.sha256(), 0, [], 0
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            if stop.is_set():
                raise InterruptedError("hashing stopped")
            chunk = view[:n]
            sha.update(chunk)  # hashlib and zlib release the GIL: uploads go on meanwhile
            if not part_size:
                crc = zlib.crc32(chunk, crc)
            offset = 0
            while part_size and offset < n:
                take = min(n - offset, part_size - in_part)
                crc = zlib.crc32(chunk[offset : offset + take], crc)
                in_part, offset = in_part + take, offset + take
                if in_part == part_size:
                    crcs.append(crc)
                    crc, in_part = 0, 0
            on_bytes(n)
    if not part_size:
        return Digest(sha.hexdigest(), 0, _b64crc(crc), 1)
    if in_part:
        crcs.append(crc)
    composite = zlib.crc32(b"".join(c.to_bytes(4, "big") for c in crcs))
    return Digest(sha.hexdigest(), part_size, _b64crc(composite), len(crcs))


class DigestCache:
    """Digests of a model folder's files, kept in `.cache/docbot/sha256.json` by (size, mtime_ns)."""

    def __init__(self, model_dir: Path | str):
        self.file = Path(model_dir) / ".cache" / "docbot" / "sha256.json"
        self.stop = threading.Event()
        self._lock = threading.Lock()
        try:
            self._entries: dict[str, dict] = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self._entries = {}

    def cached(self, f: LocalFile, part_size: int) -> Digest | None:
        entry = self._entries.get(f.rel)
        if entry is None:
            return None
        try:
            if (entry["size"], entry["mtime_ns"]) != (f.size, f.mtime_ns):
                return None
            crc32, parts = entry["crc32"][str(part_size)]
            return Digest(entry["sha256"], part_size, crc32, parts)
        except (KeyError, TypeError, ValueError):  # not cached, or a cache file of another shape
            return None

    def digest(self, f: LocalFile, part_size: int, on_bytes: Callable[[int], None] = lambda n: None) -> Digest:
        """The file's digest for that part size (0: one PUT); hashes the file when not cached."""
        found = self.cached(f, part_size)
        if found:
            return found
        digest = _hash(f.path, part_size, self.stop, on_bytes)
        with self._lock:
            entry = self._entries.get(f.rel) or {}
            if (entry.get("size"), entry.get("mtime_ns"), entry.get("sha256")) != (f.size, f.mtime_ns, digest.sha256):
                entry = self._entries[f.rel] = {
                    "size": f.size,
                    "mtime_ns": f.mtime_ns,
                    "sha256": digest.sha256,
                    "crc32": {},
                }
            entry["crc32"][str(part_size)] = [digest.crc32, digest.parts]
        return digest

    def save(self) -> None:
        """Write the cache whole (a read-only model folder just goes without one)."""
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._entries))
            tmp.replace(self.file)
        except OSError:
            pass


def mismatch(f: LocalFile, digest: Digest, obj: dict | None) -> str | None:
    """Why the object is not an exact copy of the file (None when it is).

    Size and sha256 metadata always; the server's own CRC32 when it reports one and the digest was
    computed for the part size the object records."""
    if obj is None:
        return "missing"
    if obj["ContentLength"] != f.size:
        return f"size {obj['ContentLength']} != local {f.size}"
    meta = obj.get("Metadata", {}).get("sha256")
    if meta != digest.sha256:
        return "no sha256 metadata" if meta is None else "sha256 metadata differs from the local file"
    server = obj.get("ChecksumCRC32")
    # a FULL_OBJECT CRC of a multipart object is not what we compute (we never ask for one)
    comparable = not (digest.part_size and obj.get("ChecksumType") == "FULL_OBJECT")
    if server and comparable and recorded_part_size(obj) == digest.part_size:
        value, _, count = server.partition("-")
        if value != digest.crc32 or (count and int(count) != digest.parts):
            return "the server's CRC32 of the bytes it holds differs from the local file's"
    return None
