"""The repository on disk as the hub would serve it: each file with its git blob id (and, for what the hub keeps in
Git LFS, its sha256 and pointer size), and the repo's commit sha derived from the files' contents.

Layer: local (the hub stand-in's repo): imports nothing of docbot_lib.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

# What the hub stores with Git LFS: its default .gitattributes patterns, plus anything over 10 MB.
# Only LFS files carry a sha256 of their content in the hub's metadata.
LFS_PATTERNS = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gguf",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
)
LFS_MIN_SIZE = 10 * 1000 * 1000


@dataclass(frozen=True)
class ServedFile:
    path: str  # relative, "/"-separated
    disk_path: Path
    size: int
    blob_id: str  # git blob sha1 (of the LFS pointer, for LFS files: what git stores)
    sha256: str | None  # content sha256, LFS files only
    pointer_size: int | None

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


def _hash_file(path: Path, size: int) -> tuple[str, str]:
    """(git blob sha1, sha256) of a file's content, read once."""
    git = hashlib.sha1(b"blob %d\0" % size)
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            git.update(chunk)
            sha.update(chunk)
    return git.hexdigest(), sha.hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_MIN_SIZE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def scan_repo(folder: Path) -> list[ServedFile]:
    """The files of a repo folder (symlinks followed; hidden folders such as .git left out, dot-files kept:
    the hub serves .gitattributes)."""
    files = []
    for disk_path in sorted(folder.rglob("*")):
        rel = disk_path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")[:-1]) or not disk_path.is_file():
            continue
        size = disk_path.stat().st_size
        blob_id, sha256 = _hash_file(disk_path, size)
        if _is_lfs(rel, size):
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
            files.append(
                ServedFile(
                    rel,
                    disk_path,
                    size,
                    hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest(),
                    sha256,
                    len(pointer),
                )
            )
        else:
            files.append(ServedFile(rel, disk_path, size, blob_id, None, None))
    return files


@dataclass
class ServedRepo:
    repo_id: str
    folder: Path
    files: dict[str, ServedFile] = field(default_factory=dict)
    sha: str = ""

    @classmethod
    def load(cls, repo_id: str, folder: Path) -> ServedRepo:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"repo folder {folder} for {repo_id} does not exist")
        files = {f.path: f for f in scan_repo(folder)}
        commit = hashlib.sha1(repo_id.encode())
        for f in files.values():
            commit.update(f"{f.path}\0{f.blob_id}\n".encode())
        return cls(repo_id, folder, files, commit.hexdigest())

    def resolves(self, revision: str) -> bool:
        return revision in ("main", self.sha)
