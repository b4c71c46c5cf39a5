"""The upload: every file of the model folder to its object, in parts, in parallel, skipped when identical,
verified after upload (a mismatch is deleted), and the whole prefix verified against the folder (`verify_model`).

Layer: pipeline, step `s3` (the upload): imports core, clients, the hub step and s3's own modules.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.clients.s3 import s3_client, s3_errors
from docbot_lib.core.errors import (
    BadInput,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.s3.bucket import (
    abort_incomplete_uploads,
    ensure_bucket,
    head,
    learner_model_prefix,
    list_objects,
    normal_prefix,
    recorded_part_size,
)
from docbot_lib.pipeline.s3.digest import (
    HASH_BLOCK,
    Digest,
    DigestCache,
    LocalFile,
    MiB,
    mismatch,
    model_files,
    part_size_for,
)

# Parts of 16 MiB: twice the AWS CLI's, ~900 requests for a 14.5 GB model. Measured on moto (2 cores):
# 32-64 MiB parts cost the server ~20% more CPU per GiB uploaded, and the part size of an upload does not
# change how fast the object downloads later (that is the downloader's range size).
PART_SIZE = 16 * MiB
# Parts in flight at once: 8 keeps the server busy while the client reads and sends (measured 2-8 on moto).
CONCURRENCY = 8


# -- upload ------------------------------------------------------------------------------------------
@dataclass
class UploadReport:
    """What one `upload_model` run did."""

    bucket: str
    prefix: str
    uploaded: list[str] = field(default_factory=list)  # keys
    skipped: list[str] = field(default_factory=list)  # already there and identical
    extra: list[str] = field(default_factory=list)  # objects under the prefix with no local file
    deleted: list[str] = field(default_factory=list)  # extra objects removed (delete_extra=True)
    bytes_uploaded: int = 0
    bytes_skipped: int = 0
    aborted_uploads: int = 0  # incomplete multipart uploads of an earlier run, aborted
    bucket_created: bool = False
    seconds: float = 0.0

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def __str__(self) -> str:
        from docbot_lib.pipeline.hub import human_size

        rate = f" ({human_size(int(self.bytes_uploaded / self.seconds))}/s)" if self.bytes_uploaded else ""
        lines = [
            f"destination        {self.uri}" + ("  (bucket created)" if self.bucket_created else ""),
            f"uploaded           {len(self.uploaded)} file(s), {human_size(self.bytes_uploaded)}",
            f"skipped            {len(self.skipped)} file(s) already there and identical, "
            f"{human_size(self.bytes_skipped)}",
            f"time               {self.seconds:.1f} s{rate}",
        ]
        if self.aborted_uploads:
            lines.append(f"cleaned up         {self.aborted_uploads} incomplete upload(s) of an earlier run")
        if self.extra:
            lines.append(
                f"not in the folder  {len(self.extra)} object(s): {', '.join(self.extra[:5])}"
                + (" (deleted)" if self.deleted else " (kept; delete_extra=True removes them)")
            )
        return "\n".join(lines)


def _progress(bar, callback: Callable[[int], None] | None):
    """An s3transfer subscriber: bytes into the progress bar and the caller's callback."""
    from s3transfer.subscribers import BaseSubscriber

    lock = threading.Lock()  # s3transfer reports from its worker threads

    class Progress(BaseSubscriber):
        def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
            with lock:
                bar.update(bytes_transferred)  # negative when s3transfer retries a part
            if callback:
                callback(bytes_transferred)

        def skipped(self, size: int) -> None:
            with lock:
                bar.update(size)  # the bar counts files already there as done; nothing was sent

    return Progress()


def upload_model(
    settings: Settings,
    model_dir: Path | str,
    prefix: str | None = None,
    *,
    part_size: int = PART_SIZE,
    concurrency: int = CONCURRENCY,
    delete_extra: bool = False,
    progress: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> UploadReport:
    """Upload the model folder to `s3://<settings.s3_bucket>/<prefix>` (default `models/<settings.model_id>/`).

    Creates the bucket if missing; skips files already there and identical; verifies every uploaded
    object (deleting one that does not verify); aborts incomplete uploads an earlier run left under the
    prefix. `part_size` (>= 5 MiB) and `concurrency` tune the transfer; `on_progress(bytes)` is called as
    bytes go out. Objects under the prefix with no local file are reported, and deleted only with
    `delete_extra=True`. Raises DocbotError (S3 unreachable, credentials refused, folder missing); an
    interrupted run (Ctrl-C, a raising `on_progress`) cancels its transfers and leaves no partial object.
    """
    from tqdm.auto import tqdm

    if part_size < 5 * MiB:
        raise BadInput(f"part size {part_size} is below S3's minimum of 5 MiB", "use part_size >= 5 * 2**20")
    files = model_files(model_dir)
    prefix = normal_prefix(prefix) if prefix else learner_model_prefix(settings)
    report = UploadReport(settings.s3_bucket, prefix)
    start = time.perf_counter()
    client = s3_client(settings, max_pool_connections=concurrency + 4)
    cache = DigestCache(model_dir)
    hashing = sum(f.size for f in files if not cache.cached(f, part_size_for(f.size, part_size)))
    with s3_errors(settings, f"uploading to s3://{report.bucket}/{prefix}"):
        report.bucket_created = ensure_bucket(client, settings)
        report.aborted_uploads = abort_incomplete_uploads(client, report.bucket, prefix)
        remote = list_objects(client, report.bucket, prefix)
        with (
            tqdm(
                total=hashing,
                unit="B",
                unit_scale=True,
                desc="sha256",
                disable=not progress or not hashing,
                leave=False,
            ) as hash_bar,
            tqdm(
                total=sum(f.size for f in files), unit="B", unit_scale=True, desc="upload", disable=not progress
            ) as bar,
        ):
            try:
                _sync(
                    client, report, files, remote, cache, part_size, concurrency, hash_bar, _progress(bar, on_progress)
                )
            finally:
                cache.save()
        report.extra = sorted(set(remote) - {prefix + f.rel for f in files})
        if delete_extra:
            for key in report.extra:
                client.delete_object(Bucket=report.bucket, Key=key)
                report.deleted.append(key)
    report.seconds = time.perf_counter() - start
    return report


def _sync(
    client,
    report: UploadReport,
    files: list[LocalFile],
    remote: dict[str, int],
    cache: DigestCache,
    part_size: int,
    concurrency: int,
    hash_bar,
    progress,
) -> None:
    """Hash each file, skip it when the bucket holds it already, else upload it; then verify each upload."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    bucket, prefix = report.bucket, report.prefix
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    # one file at a time: the first upload starts sooner, and hashing (~1 GB/s) outruns any upload
    hashers = ThreadPoolExecutor(1, thread_name_prefix="docbot-sha256")
    try:
        with create_transfer_manager(client, config) as manager:
            transfers = []
            jobs = {
                hashers.submit(cache.digest, f, part_size_for(f.size, part_size), hash_bar.update): f for f in files
            }
            # each file goes as soon as its digest is known: the digest travels as the object's metadata
            for job in as_completed(jobs):
                f, digest = jobs[job], job.result()
                key = prefix + f.rel
                if remote.get(key) == f.size and mismatch(f, digest, head(client, bucket, key)) is None:
                    report.skipped.append(key)
                    report.bytes_skipped += f.size
                    progress.skipped(f.size)
                    continue
                extra = {
                    "ChecksumAlgorithm": "CRC32",
                    "Metadata": {"sha256": digest.sha256, "part-size": str(digest.part_size)},
                }
                transfers.append(
                    (f, digest, manager.upload(str(f.path), bucket, key, extra_args=extra, subscribers=[progress]))
                )
            for f, digest, transfer in transfers:
                transfer.result()
                _verify_uploaded(client, bucket, prefix + f.rel, f, digest)
                report.uploaded.append(prefix + f.rel)
                report.bytes_uploaded += f.size
    finally:
        cache.stop.set()  # a hash still running stops at its next block
        hashers.shutdown(wait=True, cancel_futures=True)
        cache.stop.clear()


def _verify_uploaded(client, bucket: str, key: str, f: LocalFile, digest: Digest) -> None:
    problem = mismatch(f, digest, head(client, bucket, key))
    if problem:
        client.delete_object(Bucket=bucket, Key=key)  # never leave an object that is not the file
        raise ServiceUnavailable(
            f"s3://{bucket}/{key} did not verify after upload ({problem}); it was deleted",
            "check that nothing changes the model folder during the upload, then run again",
        )


# -- verify ------------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """Every object under the prefix against the model folder."""

    bucket: str
    prefix: str
    verified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)  # key -> why
    extra: list[str] = field(default_factory=list)  # objects with no local file
    bytes_verified: int = 0
    reread: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.verified) and not (self.missing or self.mismatched or self.extra)

    def __str__(self) -> str:
        from docbot_lib.pipeline.hub import human_size

        how = "size, sha256 metadata, server CRC32" + (", bytes re-read" if self.reread else "")
        lines = [
            f"s3://{self.bucket}/{self.prefix}: {len(self.verified)} object(s) verified "
            f"({human_size(self.bytes_verified)}; {how})"
        ]
        lines += [f"  MISSING     {k}" for k in self.missing]
        lines += [f"  DIFFERENT   {k}: {why}" for k, why in self.mismatched.items()]
        lines += [f"  NOT LOCAL   {k}" for k in self.extra]
        lines.append(
            "OK: every object is an exact copy of the model folder"
            if self.ok
            else "NOT OK: run the upload again (upload_model(..., delete_extra=True) removes objects "
            "with no local file)"
        )
        return "\n".join(lines)


def verify_model(
    settings: Settings, model_dir: Path | str, prefix: str | None = None, *, reread: bool = False
) -> VerifyReport:
    """Check every object under the prefix against the model folder: size, sha256 metadata, the server's
    CRC32; with `reread=True` also download each object and hash its bytes. Raises DocbotError only
    when S3 cannot be asked; differences are in the report (`.ok`)."""
    files = model_files(model_dir)
    prefix = normal_prefix(prefix) if prefix else learner_model_prefix(settings)
    bucket = settings.s3_bucket
    report = VerifyReport(bucket, prefix, reread=reread)
    client = s3_client(settings)
    cache = DigestCache(model_dir)
    with s3_errors(settings, f"verifying s3://{bucket}/{prefix}"):
        remote = list_objects(client, bucket, prefix)
        for f in sorted(files, key=lambda f: f.rel):
            key = prefix + f.rel
            obj = head(client, bucket, key) if key in remote else None
            if obj is None:
                report.missing.append(key)
                continue
            recorded = recorded_part_size(obj)
            digest = cache.digest(f, recorded if recorded is not None else part_size_for(f.size, PART_SIZE))
            problem = mismatch(f, digest, obj)
            if not problem and reread and _sha256_of_object(client, bucket, key) != digest.sha256:
                problem = "the object's bytes differ from the local file"
            if problem:
                report.mismatched[key] = problem
            else:
                report.verified.append(key)
                report.bytes_verified += f.size
        report.extra = sorted(set(remote) - {prefix + f.rel for f in files})
    cache.save()
    return report


def _sha256_of_object(client, bucket: str, key: str) -> str:
    sha = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(HASH_BLOCK), b""):
        sha.update(chunk)
    return sha.hexdigest()
