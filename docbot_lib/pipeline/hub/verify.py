"""A downloaded model checked offline against the hub's own checksums: sha256 for LFS files, git's blob sha1 for
the rest (`verify_model`).

Layer: pipeline, step `hub` (its verification): imports core and hub.plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from docbot_lib.core.errors import NotFound
from docbot_lib.pipeline.hub.plan import DownloadPlan, ModelFile, human_size, is_complete, load_plan


@dataclass
class FileCheck:
    path: str
    size: int
    checksum: str  # sha256 | git-sha1
    problem: str = ""  # empty when the file is as the hub published it

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class VerifyReport:
    """Each planned file checked: present, the right size, the hub's checksum."""

    folder: Path
    checks: list[FileCheck]
    extra: list[str] = field(default_factory=list)  # files in the folder the plan does not list

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[FileCheck]:
        return [c for c in self.checks if not c.ok]

    def __str__(self) -> str:
        width = max((len(c.path) for c in self.checks), default=10)
        lines = [
            f"  {c.path:<{width}}  {human_size(c.size):>9}  {c.checksum:<8}  {c.problem or 'ok'}" for c in self.checks
        ]
        verdict = (
            f"All {len(self.checks)} files are complete and match the hub's checksums."
            if self.ok
            else f"{len(self.problems)} of {len(self.checks)} files are NOT as the hub published them."
        )
        if self.extra:
            lines.append(f"  (also in the folder, not part of this download: {', '.join(self.extra)})")
        return "\n".join([f"Verified {self.folder}", *lines, verdict])


def hasher_for(f: ModelFile):
    """sha256 for an LFS file, else git's blob sha1: what the hub publishes for each."""
    return hashlib.sha256() if f.sha256 else hashlib.sha1(b"blob %d\0" % f.size)


def hash_into(path: Path, hasher, bar=None) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            hasher.update(chunk)
            if bar is not None:
                bar.update(len(chunk))


def verify_model(folder: Path, plan: DownloadPlan | None = None, *, progress: bool = True) -> VerifyReport:
    """Check every planned file in `folder`: present, the size and the checksum the hub published.

    Offline: the checksums come from the plan (saved in the folder by `download_model` when not given).
    Reads every byte once (~1 min for 14.5 GB).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"model folder {folder} does not exist", "download the model first (notebook 01)")
    return verify_against(folder, plan or load_plan(folder), progress, {})


def verify_against(folder: Path, plan: DownloadPlan, progress: bool, digests: dict[str, str | None]) -> VerifyReport:
    """verify_model, taking the checksums of files hashed while they were downloaded from `digests`."""
    checks = []
    to_read = [f for f in plan.files if is_complete(folder, f) and not digests.get(f.path)]
    with tqdm(
        total=sum(f.size for f in to_read),
        desc="verifying",
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        disable=not progress or not to_read,
    ) as bar:
        for f in plan.files:
            path = folder / f.path
            algorithm = "sha256" if f.sha256 else "git-sha1"
            if not path.is_file():
                checks.append(FileCheck(f.path, f.size, algorithm, "missing"))
                continue
            size = path.stat().st_size
            if size != f.size:
                checks.append(FileCheck(f.path, f.size, algorithm, f"size {size} bytes, expected {f.size}"))
                continue
            expected = f.sha256 or f.blob_id
            actual = digests.get(f.path)
            if not actual:
                hasher = hasher_for(f)
                hash_into(path, hasher, bar)
                actual = hasher.hexdigest()
            problem = (
                ""
                if actual == expected
                else (f"{algorithm} differs from the hub's (expected {expected[:12]}…, got {actual[:12]}…)")
            )
            checks.append(FileCheck(f.path, f.size, algorithm, problem))
    planned = {f.path for f in plan.files}
    extra = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and not p.relative_to(folder).as_posix().startswith(".cache/")
        and p.relative_to(folder).as_posix() not in planned
    )
    return VerifyReport(folder, checks, extra)
