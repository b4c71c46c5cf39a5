"""Put the downloaded model into S3 (MinIO / ODF / AWS) where KServe reads it, and make the data connection.

Layout: `s3://<bucket>/models/<model id>/<file>`, the Hugging Face id unchanged
(`models/mistralai/Mistral-7B-Instruct-v0.2/config.json`): the prefix says which model it holds, and the
InferenceService's `storageUri` is `storage_uri(settings, prefix)`. Hidden files and folders of the model
folder (`.cache/`, `.gitattributes`) are not uploaded.

Identical means exact: every object carries `x-amz-meta-sha256` (the file's SHA-256, which is also its
Hugging Face LFS id) and `x-amz-meta-part-size`. It is sent with the S3 additional checksum
`ChecksumAlgorithm="CRC32"`, so the server checks every part and keeps a checksum of what it received: the
file's CRC32 for a single PUT, for a multipart object the "composite" CRC32 of the part CRCs (`<b64>-N` on
AWS, without `-N` on moto 5.2.5). An object is identical to a local file when the size, the sha256 metadata
and, where the server reports one, that CRC32 recomputed locally all match. CRC32 rather than SHA256 for the transfer: the SHA-256 identity is computed
once locally, and the client and the server each hashing every part again with SHA-256 made uploads
slower on 2 cores (bench/s3_upload.py). Local digests are cached in
`<model folder>/.cache/docbot/sha256.json` by (size, mtime), as rsync and git do.

Never half-written: a single PUT is atomic and a multipart object only appears on CompleteMultipartUpload;
s3transfer aborts a multipart upload that fails; an object that does not verify is deleted; uploads left
behind by a killed run are aborted at the next run's start (so run one upload per prefix at a time). A run
can be interrupted: the next one skips every object already there and identical (resume is per file).

Layer: pipeline, step `s3`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docbot_lib.clients.s3 import endpoint_name, s3_client, s3_errors
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotFound,
    NotReachable,
    PermissionDenied,
    ServiceUnavailable,
)
from docbot_lib.core.names import DNS_LABEL
from docbot_lib.core.settings import Settings
from docbot_lib.k8s import manifests

MiB = 1 << 20
# Parts of 16 MiB: twice the AWS CLI's, ~900 requests for a 14.5 GB model. Measured on moto (2 cores):
# 32-64 MiB parts cost the server ~20% more CPU per GiB uploaded, and the part size of an upload does not
# change how fast the object downloads later (that is the downloader's range size).
PART_SIZE = 16 * MiB
# Parts in flight at once: 8 keeps the server busy while the client reads and sends (measured 2-8 on moto).
CONCURRENCY = 8
_HASH_BLOCK = 8 * MiB
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- where things go ---------------------------------------------------------------------------
def model_prefix(model_id: str) -> str:
    """`models/<model id>/` for a Hugging Face id such as `mistralai/Mistral-7B-Instruct-v0.2`."""
    parts = model_id.strip("/").split("/")
    if not model_id.strip("/") or not all(_NAME_PART.match(p) and p not in (".", "..") for p in parts):
        raise BadInput(
            f"{model_id!r} is not a model id", "use the Hugging Face id, e.g. 'mistralai/Mistral-7B-Instruct-v0.2'"
        )
    return "models/" + "/".join(parts) + "/"


def learner_model_prefix(settings) -> str:
    """Where the settings' model goes in the bucket: `<user>/models/<model id>/` for a learner of a class
    (docbot_lib.core.names: the bucket is shared, the prefix is theirs), else `models/<model id>/`."""
    return settings.names.s3_prefix + model_prefix(settings.model_id)


def storage_uri(settings: Settings, prefix: str) -> str:
    """The `s3://bucket/prefix` an InferenceService's storageUri names (no trailing slash)."""
    return f"s3://{settings.s3_bucket}/{prefix.strip('/')}"


def ensure_bucket(client, settings: Settings) -> bool:
    """Create the settings' bucket when it does not exist; True when it was created."""
    from botocore.exceptions import ClientError

    bucket = settings.s3_bucket
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403:
            raise AuthRefused(
                f"S3 at {endpoint_name(settings)} refused the credentials for bucket {bucket!r} (403)",
                "check DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY (or the data connection's AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY), or choose a bucket this key may use (DOCBOT_S3_BUCKET)",
                service="s3",
            ) from None
        if status != 404:
            raise
    args: dict[str, Any] = {"Bucket": bucket}
    if not settings.s3_endpoint and settings.s3_region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        client.create_bucket(**args)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def abort_incomplete_uploads(client, bucket: str, prefix: str) -> int:
    """Abort the multipart uploads left under the prefix by a run that was killed; how many there were."""
    aborted = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def list_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under the prefix."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


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
    buf = bytearray(_HASH_BLOCK)
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


# -- comparing an object with a file ----------------------------------------------------------------
def head(client, bucket: str, key: str) -> dict | None:
    """The object's size, metadata and checksum (None when absent)."""
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise


def recorded_part_size(obj: dict) -> int | None:
    value = obj.get("Metadata", {}).get("part-size", "")
    return int(value) if value.isdigit() else None


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
    prefix = _normal_prefix(prefix) if prefix else learner_model_prefix(settings)
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


def _normal_prefix(prefix: str) -> str:
    parts = [p for p in prefix.strip().strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise BadInput(f"{prefix!r} is not an S3 prefix", "use e.g. 'models/mistralai/Mistral-7B-Instruct-v0.2/'")
    return "/".join(parts) + "/"


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
    prefix = _normal_prefix(prefix) if prefix else learner_model_prefix(settings)
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
    for chunk in iter(lambda: body.read(_HASH_BLOCK), b""):
        sha.update(chunk)
    return sha.hexdigest()


# -- the OpenShift AI data connection ------------------------------------------------------------------
# what a data connection's Secret holds that is no secret (shown by to_yaml; the keys are masked)
DATA_CONNECTION_PUBLIC_KEYS = ("AWS_DEFAULT_REGION", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET")


def data_connection_secret_name(connection: str) -> str:
    """The Secret an OpenShift AI data connection named `connection` is stored in."""
    return f"aws-connection-{connection}"


def data_connection_secret(
    settings: Settings, name: str, namespace: str | None = None, *, reveal: bool = False
) -> dict:
    """The Secret the OpenShift AI dashboard creates for an S3 data connection (`aws-connection-<name>`).

    The keys are masked unless `reveal=True`: print this freely, and let `apply_data_connection` use the
    real values. KServe reads the model with it; workbenches get its keys as AWS_* variables."""
    if not name or not DNS_LABEL.match(name) or len(data_connection_secret_name(name)) > 63:
        raise BadInput(
            f"{name!r} cannot name a data connection",
            "use lowercase letters, digits and '-' (e.g. 'docbot-models'), at most 48 characters",
        )
    access, secret = settings.s3_access_key, settings.secret("s3_secret_key")
    if not access or not secret:
        raise ConfigError(
            "the settings have no S3 access key / secret key for the data connection",
            "set DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY, or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY (environment or .env)",
        )
    metadata: dict[str, Any] = {
        "name": data_connection_secret_name(name),
        **({"namespace": namespace} if namespace else {}),
        "labels": {"opendatahub.io/dashboard": "true", "opendatahub.io/managed": "true"},
        "annotations": {"opendatahub.io/connection-type": "s3", "openshift.io/display-name": name},
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {
            "AWS_ACCESS_KEY_ID": access if reveal else manifests.MASK,
            "AWS_SECRET_ACCESS_KEY": secret if reveal else manifests.MASK,
            "AWS_DEFAULT_REGION": settings.s3_region,
            "AWS_S3_ENDPOINT": settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com",
            "AWS_S3_BUCKET": settings.s3_bucket,
        },
    }


def to_yaml(obj: dict) -> str:
    """A manifest as YAML to show (keys in the order given): `manifests.to_yaml`, so a Secret's values are masked,
    but for a data connection's endpoint, bucket and region."""
    return manifests.to_yaml([obj], public_keys=DATA_CONNECTION_PUBLIC_KEYS)


def apply_data_connection(settings: Settings, namespace: str, name: str, api_client=None) -> str:
    """Create the data connection Secret in the namespace, or replace it when it exists: "created" or
    "replaced". `api_client` defaults to `docbot_lib.k8s.kube.kube_api_client()`."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    body = data_connection_secret(settings, name, namespace, reveal=True)
    secret_name = body["metadata"]["name"]
    from docbot_lib.clients.kube import kube_api_client

    api = client.CoreV1Api(api_client or kube_api_client())
    hidden = [v for v in (settings.secret("s3_secret_key"), settings.s3_access_key) if v]
    host = api.api_client.configuration.host
    try:
        try:
            api.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]  # the client serializes a dict as a V1Secret
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        api.replace_namespaced_secret(secret_name, namespace, body)  # type: ignore[arg-type]  # likewise
        return "replaced"
    except ApiException as exc:
        raise _kube_error(exc, host, namespace, secret_name, hidden) from None
    except HTTPError as exc:
        raise NotReachable(
            f"the Kubernetes API at {host} does not answer ({type(exc).__name__})",
            "check the cluster address (`oc whoami --show-server`) and your network",
            service="kubernetes",
        ) from None


def _kube_error(exc, host: str, namespace: str, secret_name: str, hidden: list[str]) -> DocbotError:
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except ValueError:
        message = ""
    for value in hidden:  # an API message must not carry a key back into a notebook
        message = message.replace(value, manifests.MASK)
    what = f"Secret {secret_name} in namespace {namespace}"
    if exc.status == 401:
        return AuthRefused(
            f"the Kubernetes API at {host} refused the credentials (401)",
            "log in again (`oc login`); a workbench uses its service account token",
            service="kubernetes",
        )
    if exc.status == 403:
        return PermissionDenied(
            f"not allowed to write the {what} (403): {message}",
            f"use an account that may edit Secrets in {namespace!r}, or ask the project's admin",
            service="kubernetes",
        )
    if exc.status == 404:
        return NotFound(
            f"cannot write the {what} (404): {message}",
            f"create the project first (`oc new-project {namespace}`) or set NAMESPACE to yours",
            service="kubernetes",
        )
    kind = BadInput if 400 <= (exc.status or 0) < 500 else ServiceUnavailable  # the Secret, or the cluster
    return kind(
        f"the Kubernetes API refused the {what} ({exc.status} {exc.reason}): {message}",
        "read the message above, fix it and apply again",
        service="kubernetes",
    )
