"""The download: disk check first, then every planned file resumable (HTTP Range), hashed as it arrives,
moved in place when complete, and the whole folder verified; a file that fails its checksum is fetched again.

Layer: pipeline, step `hub` (the download): imports core, hub.plan, hub.errors and hub.verify.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from huggingface_hub import hf_hub_url
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers
from tqdm.auto import tqdm

from docbot_lib.core.errors import (
    DocbotError,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.hub.errors import hub_errors
from docbot_lib.pipeline.hub.plan import (
    DownloadPlan,
    ModelFile,
    hf_token,
    human_size,
    is_complete,
    model_folder,
    part_path,
    plan_download,
    save_plan,
)
from docbot_lib.pipeline.hub.verify import VerifyReport, hash_into, hasher_for, verify_against


def free_bytes(path: Path) -> int:
    """Free space of the file system holding `path` (the nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def bytes_to_download(files: list[ModelFile], folder: Path) -> int:
    """Bytes still missing in `folder`: files not there yet, minus what partial files already hold."""
    need = 0
    for f in files:
        if is_complete(folder, f):
            continue
        part = part_path(folder, f)
        have = part.stat().st_size if part.is_file() else 0
        need += f.size - (have if have <= f.size else 0)
    return need


def check_disk_space(plan: DownloadPlan, folder: Path, files: list[ModelFile] | None = None) -> int:
    """Raise before any byte is written when the download would not fit; return the bytes to fetch."""
    need = bytes_to_download(plan.files if files is None else files, folder)
    if need == 0:
        return 0
    free = free_bytes(folder)
    margin = need // 100  # metadata, the file system's own rounding
    if free < need + margin:
        raise DocbotError(
            f"not enough disk space for {plan.repo_id}: the download needs {human_size(need + margin)} in "
            f"{folder}, the disk has {human_size(free)} free",
            f"free some space, or download elsewhere: MODEL_DIR (DOCBOT_MODEL_DIR) on a volume with at least "
            f"{human_size(int(plan.total_bytes * 1.1))} (on OpenShift AI: a larger workbench PVC)",
        )
    return need


@dataclass
class DownloadResult:
    folder: Path
    plan: DownloadPlan
    downloaded: list[str]  # fetched by this run (partly, when resumed)
    already_there: list[str]
    resumed: list[str]  # continued from a partial file of an earlier run
    repaired: list[str]  # failed verification and were fetched again
    bytes_fetched: int
    report: VerifyReport

    def __str__(self) -> str:
        parts = [f"{len(self.downloaded)} files downloaded ({human_size(self.bytes_fetched)})"]
        if self.resumed:
            parts.append(f"{len(self.resumed)} resumed from an interrupted run")
        if self.already_there:
            parts.append(f"{len(self.already_there)} already there")
        if self.repaired:
            parts.append(f"{len(self.repaired)} repaired: {', '.join(self.repaired)}")
        verdict = "verified" if self.report.ok else "NOT verified"
        return f"{self.plan.repo_id} in {self.folder}: " + "; ".join(parts) + f"; {verdict}"


class _Stopped(Exception):
    """Raised inside a download thread when another one failed or the user interrupted."""


def _progress_bars(progress: bool, stop: threading.Event):
    """tqdm bars that also stop their download: http_get updates its bar before writing each chunk."""

    class Bar(tqdm):
        def update(self, n=1):
            if stop.is_set():
                raise _Stopped()
            return super().update(n)

    return functools.partial(Bar, disable=not progress)


class _HashingFile:
    """The partial file, hashing what is written: a file fetched this run is checked without reading it again."""

    def __init__(self, fh, hasher):
        self.fh, self.hasher, self.rewound = fh, hasher, False

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, *args) -> int:  # the server ignored our Range: http_get starts the file over
        self.rewound = True
        return self.fh.seek(*args)

    def truncate(self, *args) -> int:
        self.rewound = True
        return self.fh.truncate(*args)


def _fetch(plan: DownloadPlan, f: ModelFile, folder: Path, token: str | None, bars) -> tuple[int, bool, str | None]:
    """Download one file into its partial file, resuming it, then move it in place.

    Returns (bytes fetched, resumed, checksum of the content) — checksum None when it must be read again.
    """
    part = part_path(folder, f)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > f.size:
        part.unlink()
        have = 0
    hasher = hasher_for(f)
    if have:
        hash_into(part, hasher)
    url = hf_hub_url(plan.repo_id, f.path, revision=plan.commit, endpoint=plan.endpoint)
    headers = build_hf_headers(token=token or False, library_name="docbot")
    with part.open("ab") as fh:
        sink = _HashingFile(fh, hasher)
        # huggingface_hub's own GET: Range from `have`, retries of a dropped connection, the size check
        http_get(
            url,
            cast(BinaryIO, sink),  # it writes, tells, seeks and truncates: what _HashingFile does
            resume_size=have,
            headers=headers,
            expected_size=f.size,
            displayed_filename=f.path,
            tqdm_class=bars,
        )
    final = folder / f.path
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    return f.size - have, have > 0, None if sink.rewound else hasher.hexdigest()


def _fetch_all(
    plan: DownloadPlan, files: list[ModelFile], folder: Path, token: str | None, progress: bool, workers: int
) -> dict[str, tuple[int, bool, str | None]]:
    """Download files in parallel (shards of a big model come faster over several connections).

    The first error, or an interrupt, stops the other downloads at their next chunk; their partial
    files stay for the next run to resume.
    """
    stop = threading.Event()
    bars = _progress_bars(progress, stop)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for f in files:
        todo.put(f)
    results: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while not stop.is_set():
            try:
                f = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((f.path, _fetch(plan, f, folder, token, bars), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                results.put((f.path, None, exc))

    # daemon threads, not a ThreadPoolExecutor: the interpreter waits for an executor's threads at exit, so a
    # thread stuck on a hanging transfer would hold a Ctrl-C'd process until the transfer timed out
    for n in range(max(1, min(workers, len(files)))):
        threading.Thread(target=work, name=f"docbot-hub-{n}", daemon=True).start()
    done: dict[str, tuple[int, bool, str | None]] = {}
    try:
        with tqdm(total=len(files), desc="files", unit="file", disable=not progress or len(files) < 2) as bar:
            while len(done) < len(files):
                try:
                    # short waits: Ctrl-C (KeyboardInterrupt) reaches this thread within half a second
                    path, result, error = results.get(timeout=0.5)
                except queue.Empty:
                    continue
                if error is not None:
                    raise error
                done[path] = result
                bar.update(1)
    except BaseException:
        # the others stop at their next chunk, writing nothing more; a thread stuck on a dead connection is
        # not waited for (its partial file stays for the next run to resume)
        stop.set()
        raise
    return done


def download_model(
    settings: Settings,
    target: Path | None = None,
    *,
    plan: DownloadPlan | None = None,
    gguf_file: str | None = None,
    progress: bool = True,
    workers: int = 4,
) -> DownloadResult:
    """Download the planned files into `target` (default `model_folder(settings)`), then verify them.

    Checks free disk space before the first byte. Files already complete are kept; partial files of an
    interrupted run are resumed. A file failing verification is fetched again once; if it still fails,
    it is deleted and a DocbotError says so. Interrupting (Ctrl-C, a killed kernel) is safe: run again.
    `workers` files download at once.
    """
    plan = plan or plan_download(settings, gguf_file=gguf_file)
    folder = Path(target) if target is not None else model_folder(settings, plan.repo_id)
    token = hf_token(settings)
    check_disk_space(plan, folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_plan(plan, folder)

    with hub_errors(settings, plan.endpoint, plan.repo_id, plan.revision, token is not None):
        todo = [f for f in plan.files if not is_complete(folder, f)]
        done = _fetch_all(plan, todo, folder, token, progress, workers)
        report = verify_against(folder, plan, progress, {path: digest for path, (_, _, digest) in done.items()})
        repaired = [c.path for c in report.problems]
        again: dict[str, tuple[int, bool, str | None]] = {}
        if repaired:
            bad = [f for f in plan.files if f.path in repaired]
            for f in bad:
                (folder / f.path).unlink(missing_ok=True)
                part_path(folder, f).unlink(missing_ok=True)
            check_disk_space(plan, folder, bad)
            again = _fetch_all(plan, bad, folder, token, progress, workers)
            report = verify_against(folder, plan, progress, {path: digest for path, (_, _, digest) in again.items()})
    fetched = sum(n for n, _, _ in [*done.values(), *again.values()])
    if not report.ok:
        for c in report.problems:
            (folder / c.path).unlink(missing_ok=True)  # never leave a file known to be wrong
        raise ServiceUnavailable(
            f"{', '.join(c.path for c in report.problems)} still differ from the hub's checksums after a fresh "
            f"download (deleted)",
            "run the download again; if it persists, check the disk and the network path "
            "(a proxy rewriting files?) or pin another commit",
            service="hub",
        )
    return DownloadResult(
        folder,
        plan,
        downloaded=[f.path for f in todo],
        already_there=[f.path for f in plan.files if f not in todo],
        resumed=[f.path for f in todo if done[f.path][1]],
        repaired=repaired,
        bytes_fetched=fetched,
        report=report,
    )
