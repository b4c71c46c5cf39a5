"""Download a model from the Hugging Face hub: only what a server needs, pinned, resumable, verified.

  plan = plan_download(settings)          # which files, how big, what is skipped and why
  result = download_model(settings)       # disk check, download with progress, verify, repair
  report = verify_model(folder)           # sizes + checksums against the hub's, offline

The revision (a branch such as `main`) is resolved to its commit sha first and every byte comes from
that commit. Of the weights, ONE format is kept (safetensors first, else PyTorch .bin, else one GGUF);
duplicates such as Mistral's `consolidated.safetensors` or `pytorch_model*.bin` are skipped, which
halves Mistral-7B-Instruct-v0.2 from ~29 GB to ~14.5 GB.

Where: `settings.model_path / <owner>/<name>`; partial files and the plan live in `<folder>/.cache/docbot/`
(not part of the model). An interrupted download resumes where it stopped (HTTP Range requests), also
across processes: run it again. The token comes from `settings.hf_token` (HF_TOKEN / DOCBOT_HF_TOKEN,
environment or .env) or a `.hf-token` file in the project or current folder; it is never printed.

Layer: pipeline, step `hub`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import queue
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

import httpx
from huggingface_hub import HfApi, RepoFile, constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers
from tqdm.auto import tqdm

from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings, project_dir

HF_HUB = "https://huggingface.co"
TOKEN_FILE = ".hf-token"
STATE_DIR = ".cache/docbot"  # inside the model folder: plan and partial files, not part of the model

# Weight formats by file suffix; the servable ones in order of preference (vLLM loads safetensors and
# PyTorch .bin, llama.cpp loads GGUF). The others are never what the lab's servers load.
WEIGHT_SUFFIXES = {
    ".safetensors": "safetensors",
    ".bin": "pytorch",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".gguf": "gguf",
    ".ckpt": "checkpoint",
    ".h5": "tensorflow",
    ".msgpack": "flax",
    ".onnx": "onnx",
    ".onnx_data": "onnx",
    ".tflite": "tflite",
    ".ot": "rust",
    ".mlmodel": "coreml",
    ".nemo": "nemo",
}
SERVABLE_FORMATS = ("safetensors", "pytorch", "gguf")
FORMAT_NAMES = {
    "safetensors": "safetensors",
    "pytorch": "PyTorch pickle (.bin/.pt)",
    "gguf": "GGUF",
    "checkpoint": "checkpoint (.ckpt)",
    "tensorflow": "TensorFlow (.h5)",
    "flax": "Flax (.msgpack)",
    "onnx": "ONNX",
    "tflite": "TFLite",
    "rust": "rust-bert (.ot)",
    "coreml": "Core ML",
    "nemo": "NeMo",
}
# Among several GGUF quantizations, the first of these found is taken (pass gguf_file= to choose).
GGUF_PREFERENCE = ("Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q5_K_M", "Q8_0")
# Besides the weights, a server needs the configs and the tokenizer; the card and licence travel along.
KEEP_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken", ".py", ".md")
KEEP_PREFIXES = ("LICENSE", "LICENCE", "NOTICE", "USE_POLICY")


# -- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFile:
    """A file to download, with the checksums the hub publishes for it."""

    path: str
    size: int
    kind: str  # weights, weights index, config, tokenizer, model card, licence, code
    blob_id: str  # git blob sha1 (the checksum of a small, non-LFS file)
    sha256: str | None = None  # content sha256 of an LFS file (the weights)


@dataclass(frozen=True)
class SkippedFile:
    path: str
    size: int
    reason: str


@dataclass
class DownloadPlan:
    """What `download_model` will fetch: files of one commit, their sizes, and what it leaves out."""

    repo_id: str
    revision: str  # as asked (a branch, tag or sha)
    commit: str  # the sha it resolved to: every file comes from this commit
    endpoint: str
    gated: bool
    weight_format: str
    files: list[ModelFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def skipped_bytes(self) -> int:
        return sum(f.size for f in self.skipped)

    @property
    def source(self) -> str:
        return describe_endpoint(self.endpoint, self.repo_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> DownloadPlan:
        data = json.loads(text)
        data["files"] = [ModelFile(**f) for f in data["files"]]
        data["skipped"] = [SkippedFile(**f) for f in data["skipped"]]
        return cls(**data)

    def __str__(self) -> str:
        paths = [f.path for f in self.files] + [s.path for s in self.skipped]
        width = max((len(p) for p in paths), default=10)
        access = "gated (your token has access)" if self.gated else "public"
        lines = [
            f"Model     {self.repo_id} @ {self.revision} (commit {self.commit[:12]})",
            f"From      {self.source}",
            f"Access    {access}",
            f"Weights   {FORMAT_NAMES.get(self.weight_format, self.weight_format)}",
            "",
            f"To download: {len(self.files)} files, {human_size(self.total_bytes)}",
        ]
        lines += [f"  {f.path:<{width}}  {human_size(f.size):>9}  {f.kind}" for f in self.files]
        if self.skipped:
            lines += ["", f"Skipped: {len(self.skipped)} files, {human_size(self.skipped_bytes)}"]
            lines += [f"  {f.path:<{width}}  {human_size(f.size):>9}  {f.reason}" for f in self.skipped]
        return "\n".join(lines)


def human_size(n: int) -> str:
    """Bytes in decimal units, as the hub shows them (14.5 GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def describe_endpoint(endpoint: str, repo_id: str = "") -> str:
    """Where a download comes from, in words: the real hub, the local stand-in, or a mirror."""
    if endpoint.rstrip("/") == HF_HUB:
        return f"{HF_HUB} (the Hugging Face hub)"
    serving = f", serving {repo_id}" if repo_id else ""
    if urlsplit(endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
        return f"local stand-in hub at {endpoint}{serving} (docbot_lib.local.hubserver: files from this machine)"
    return f"hub mirror at {endpoint}{serving}"


def hub_endpoint(settings: Settings) -> str:
    return (settings.hf_endpoint or HF_HUB).rstrip("/")


def token_files() -> list[Path]:
    """Where a `.hf-token` file is looked for, first found wins: the project folder, then the current one."""
    return list(dict.fromkeys([project_dir() / TOKEN_FILE, Path.cwd() / TOKEN_FILE]))


def hf_token(settings: Settings) -> str | None:
    """The Hugging Face token: settings (HF_TOKEN / DOCBOT_HF_TOKEN), else a `.hf-token` file. Never print it."""
    token = settings.secret("hf_token")
    if token:
        return token.strip()
    for path in token_files():
        if path.is_file():
            text = path.read_text().strip()
            if text:
                return text
    return None


def _classify(name: str) -> tuple[str | None, bool]:
    """(weight format, is an index file) of a root-level file name; (None, False) for other files."""
    if name.endswith(".index.json"):
        inner = name[: -len(".index.json")]
        return WEIGHT_SUFFIXES.get(Path(inner).suffix), True
    return WEIGHT_SUFFIXES.get(Path(name).suffix), False


def _kind(name: str) -> str | None:
    """What a non-weight file is for, or None when a server does not need it."""
    lower = name.lower()
    if name.startswith(KEEP_PREFIXES):
        return "licence"
    if not lower.endswith(KEEP_SUFFIXES):
        return None
    if lower == "readme.md":
        return "model card"
    if lower.endswith(".md"):
        return None
    if lower.endswith(".py"):
        return "code"
    if (
        "token" in lower
        or lower.startswith(("vocab", "merges", "chat_template"))
        or lower.endswith((".model", ".tiktoken", ".jinja"))
    ):
        return "tokenizer"
    if lower.endswith(".json"):
        return "config"
    return "other"


def _gguf_variant(name: str) -> str:
    """A GGUF's quantization variant: split files (-00001-of-00003) belong to one."""
    return re.sub(r"-\d{5}-of-\d{5}(?=\.gguf$)", "", name)


def _choose_gguf(files: list[ModelFile], wanted: str | None) -> str:
    variants: dict[str, int] = {}
    for f in files:
        variants[_gguf_variant(f.path)] = variants.get(_gguf_variant(f.path), 0) + f.size
    if wanted:
        for variant in variants:
            if wanted in (variant, Path(variant).stem) or any(
                f.path == wanted and _gguf_variant(f.path) == variant for f in files
            ):
                return variant
        raise BadInput(f"the GGUF file {wanted!r} is not in the repo", f"choose one of: {', '.join(sorted(variants))}")
    if len(variants) == 1:
        return next(iter(variants))
    for tag in GGUF_PREFERENCE:
        for variant in sorted(variants):
            if tag.lower() in variant.lower():
                return variant
    return min(variants, key=lambda variant: variants[variant])


def choose_files(
    entries: list[ModelFile], gguf_file: str | None = None, repo_id: str = "the repo"
) -> tuple[str, list[ModelFile], list[SkippedFile]]:
    """Split a repo's files into (weight format, files a server needs, skipped files with the reason)."""
    keep: list[ModelFile] = []
    skipped: list[SkippedFile] = []
    weights: dict[str, list[ModelFile]] = {}
    indexes: dict[str, list[ModelFile]] = {}
    has_consolidated = any(e.path.startswith("consolidated") for e in entries)
    for entry in entries:
        name = entry.path
        if "/" in name:
            skipped.append(
                SkippedFile(
                    name,
                    entry.size,
                    f"in the subfolder {name.split('/')[0]}/: another copy or format, not what the server loads",
                )
            )
            continue
        if name.startswith("consolidated") or (name == "params.json" and has_consolidated):
            skipped.append(
                SkippedFile(
                    name,
                    entry.size,
                    "Mistral's native format (for mistral-inference); the server loads the Hugging Face-format files",
                )
            )
            continue
        fmt, is_index = _classify(name)
        if fmt is not None:
            (indexes if is_index else weights).setdefault(fmt, []).append(entry)
            continue
        kind = _kind(name)
        if kind is None:
            reason = "git settings" if name == ".gitattributes" else "not needed to serve the model"
            skipped.append(SkippedFile(name, entry.size, reason))
        else:
            keep.append(ModelFile(entry.path, entry.size, kind, entry.blob_id, entry.sha256))

    chosen = next((fmt for fmt in SERVABLE_FORMATS if weights.get(fmt)), None)
    if chosen is None:
        found = ", ".join(FORMAT_NAMES.get(f, f) for f in weights) or "no weight files at all"
        raise BadInput(
            f"{repo_id} has no weights in a format vLLM or llama.cpp loads ({found})",
            "choose a model repo with safetensors (vLLM) or GGUF (llama.cpp) weights",
            service="hub",
        )
    chosen_files = weights[chosen]
    if chosen == "gguf":
        variant = _choose_gguf(chosen_files, gguf_file)
        for f in chosen_files:
            if _gguf_variant(f.path) != variant:
                skipped.append(SkippedFile(f.path, f.size, f"another GGUF quantization ({variant} chosen)"))
        chosen_files = [f for f in chosen_files if _gguf_variant(f.path) == variant]
    keep += [ModelFile(f.path, f.size, "weights", f.blob_id, f.sha256) for f in chosen_files]
    keep += [ModelFile(f.path, f.size, "weights index", f.blob_id, f.sha256) for f in indexes.get(chosen, [])]
    for fmt, group in [*weights.items(), *indexes.items()]:
        if fmt != chosen:
            skipped += [
                SkippedFile(
                    f.path,
                    f.size,
                    f"the same weights in {FORMAT_NAMES.get(fmt, fmt)} format ({FORMAT_NAMES[chosen]} chosen)",
                )
                for f in group
            ]
    order = {"weights": 0, "weights index": 1, "config": 2, "tokenizer": 3}
    keep.sort(key=lambda f: (order.get(f.kind, 4), f.path))
    skipped.sort(key=lambda f: f.path)
    return chosen, keep, skipped


def plan_download(settings: Settings, *, gguf_file: str | None = None) -> DownloadPlan:
    """Resolve the revision to a commit, list its files and choose what to download. Network, no disk.

    Also checks that the token may download the files (a gated model answers 401/403), so a missing
    access shows here, before any byte is written.
    """
    endpoint = hub_endpoint(settings)
    repo_id, revision = settings.model_id, settings.model_revision
    token = hf_token(settings)
    with _hub_errors(settings, endpoint, repo_id, revision, token is not None):
        if constants.is_offline_mode():
            raise OfflineModeIsEnabled("HF_HUB_OFFLINE")
        api = HfApi(endpoint=endpoint, token=token or False, library_name="docbot")
        info = api.model_info(repo_id, revision=revision)
        commit = info.sha
        if not commit:
            raise ServiceUnavailable(
                f"the hub at {endpoint} did not say which commit {repo_id}@{revision} is",
                "try again; check HF_ENDPOINT points at a Hugging Face hub",
                service="hub",
            )
        entries = [
            ModelFile(f.path, f.size, "", f.blob_id, f.lfs.sha256 if f.lfs else None)
            for f in api.list_repo_tree(repo_id, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        ]
        weight_format, files, skipped = choose_files(entries, gguf_file, repo_id)
        plan = DownloadPlan(repo_id, revision, commit, endpoint, bool(info.gated), weight_format, files, skipped)
        probe = min(files, key=lambda f: f.size)
        get_hf_file_metadata(
            hf_hub_url(repo_id, probe.path, revision=commit, endpoint=endpoint), token=token or False, endpoint=endpoint
        )
    return plan


# -- errors -----------------------------------------------------------------------------------


@contextmanager
def _hub_errors(settings: Settings, endpoint: str, repo_id: str, revision: str, token_set: bool):
    """Turn the hub client's errors into one DocbotError naming the problem and the fix."""
    try:
        yield
    except DocbotError:
        raise
    except Exception as exc:
        error = _explain(exc, settings, endpoint, repo_id, revision, token_set)
        if error is None:
            raise
        raise error from None


def _explain(
    exc: Exception, settings: Settings, endpoint: str, repo_id: str, revision: str, token_set: bool
) -> DocbotError | None:
    repo, hub, page = repo_id, endpoint, f"{endpoint}/{repo_id}"
    where = "the environment variable HF_TOKEN (or .env)" + f", or a file {project_dir() / TOKEN_FILE}"
    if isinstance(exc, GatedRepoError):
        if not token_set:
            return AuthRefused(
                f"{repo} is a gated model and no Hugging Face token is set (HTTP {exc.response.status_code})",
                f"log in at {hub}, open {page} and accept its conditions to get access; create a read token "
                f"at {hub}/settings/tokens and put it in {where} (never in the notebook)",
                service="hub",
            )
        return PermissionDenied(
            f"the Hugging Face token in use has no access to the gated model {repo} (HTTP {exc.response.status_code})",
            f"open {page} logged in as the token's owner and accept the model's conditions (access may take "
            f"a while to be granted), or use the token of an account that has access, in {where}",
            service="hub",
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(
            f"revision {revision!r} not found in {repo} at {hub}",
            f"set MODEL_REVISION (DOCBOT_MODEL_REVISION) to a branch, tag or commit sha listed "
            f"at {page}/commits/main, or to 'main'",
            service="hub",
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return ServiceUnavailable(
            f"the hub lists a file of {repo} it then does not serve: {exc.response.url}",
            "run the download again; if it persists, the repo is being changed: pin a commit sha",
            service="hub",
        )
    if isinstance(exc, RepositoryNotFoundError):
        private = "" if token_set else "; a private repo also needs a token (HF_TOKEN or .hf-token)"
        return NotFound(
            f"model repo {repo!r} not found at {hub}",
            f"check MODEL_ID (DOCBOT_MODEL_ID): owner/name as in the model page's URL{private}",
            service="hub",
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code == 401:
        return AuthRefused(
            f"the hub at {hub} refused the Hugging Face token (invalid or expired)",
            f"create a new read token at {hub}/settings/tokens and put it in {where}",
            service="hub",
        )
    if isinstance(exc, HFValidationError):
        return BadInput(
            f"{repo!r} is not a model id", "set MODEL_ID to owner/name, e.g. mistralai/Mistral-7B-Instruct-v0.2"
        )
    if isinstance(exc, OfflineModeIsEnabled):
        return ConfigError(
            "the Hugging Face client is in offline mode (HF_HUB_OFFLINE=1 in this process)",
            "unset HF_HUB_OFFLINE in the environment and restart the kernel",
            service="hub",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DocbotError(
            f"the disk filled up while downloading {repo} (something else wrote to it too?)",
            "free some space and run the download again: it resumes where it stopped",
        )
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return ServiceUnavailable(
            f"a file of {repo} arrived incomplete from {hub} (the connection ended early)",
            "run the download again: it resumes where it stopped",
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return ServiceUnavailable(
            f"the hub at {hub} answered HTTP {status} for {repo}",
            "try again in a few minutes (a download resumes where it stopped)",
        )
    if isinstance(exc, (httpx.HTTPError, ConnectionError)):
        if settings.stack == "local":
            fix = "start the local stack (`docbot local up` or `make lab`); its stand-in hub serves the model"
        else:
            fix = (
                f"check the network from this workbench to {hub} (proxy?) and HF_ENDPOINT; "
                "run again to resume what was downloaded"
            )
        return ServiceUnavailable(f"cannot reach the hub at {hub} ({type(exc).__name__}: {exc})", fix)
    return None


# -- disk -------------------------------------------------------------------------------------


def free_bytes(path: Path) -> int:
    """Free space of the file system holding `path` (the nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def model_folder(settings: Settings, repo_id: str | None = None) -> Path:
    """Where a model is downloaded: `settings.model_path / owner / name`."""
    return settings.model_path / (repo_id or settings.model_id)


def _part_path(folder: Path, f: ModelFile) -> Path:
    # named by content: a partial file of another version of the same path is never resumed by mistake
    return folder / STATE_DIR / "parts" / f"{f.sha256 or f.blob_id}.part"


def _complete(folder: Path, f: ModelFile) -> bool:
    final = folder / f.path
    return final.is_file() and final.stat().st_size == f.size


def bytes_to_download(files: list[ModelFile], folder: Path) -> int:
    """Bytes still missing in `folder`: files not there yet, minus what partial files already hold."""
    need = 0
    for f in files:
        if _complete(folder, f):
            continue
        part = _part_path(folder, f)
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


# -- download ---------------------------------------------------------------------------------


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


def _hasher(f: ModelFile):
    """sha256 for an LFS file, else git's blob sha1: what the hub publishes for each."""
    return hashlib.sha256() if f.sha256 else hashlib.sha1(b"blob %d\0" % f.size)


def _fetch(plan: DownloadPlan, f: ModelFile, folder: Path, token: str | None, bars) -> tuple[int, bool, str | None]:
    """Download one file into its partial file, resuming it, then move it in place.

    Returns (bytes fetched, resumed, checksum of the content) — checksum None when it must be read again.
    """
    part = _part_path(folder, f)
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > f.size:
        part.unlink()
        have = 0
    hasher = _hasher(f)
    if have:
        _hash_into(part, hasher)
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


def load_plan(folder: Path) -> DownloadPlan:
    """The plan `download_model` saved in a model folder (what was downloaded, with the hub's checksums)."""
    path = Path(folder) / STATE_DIR / "plan.json"
    if not path.is_file():
        raise NotFound(
            f"{folder} holds no model downloaded by Doc Bot (no {STATE_DIR}/plan.json)",
            "download it first: `download_model(settings)` (notebook 01-download-model)",
        )
    return DownloadPlan.from_json(path.read_text())


def _save_plan(plan: DownloadPlan, folder: Path) -> None:
    state = folder / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    previous = state / "plan.json"
    if previous.is_file():
        old = DownloadPlan.from_json(previous.read_text())
        if old.repo_id != plan.repo_id:
            raise BadInput(
                f"{folder} already holds another model ({old.repo_id})",
                "download into another folder: MODEL_DIR (DOCBOT_MODEL_DIR), or empty this one",
            )
    tmp = state / "plan.json.tmp"
    tmp.write_text(plan.to_json())
    tmp.replace(previous)
    # partial files of versions no longer planned only take space
    wanted = {_part_path(folder, f).name for f in plan.files}
    for stale in (state / "parts").glob("*.part") if (state / "parts").is_dir() else []:
        if stale.name not in wanted:
            stale.unlink()


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
    _save_plan(plan, folder)

    with _hub_errors(settings, plan.endpoint, plan.repo_id, plan.revision, token is not None):
        todo = [f for f in plan.files if not _complete(folder, f)]
        done = _fetch_all(plan, todo, folder, token, progress, workers)
        report = _verify(folder, plan, progress, {path: digest for path, (_, _, digest) in done.items()})
        repaired = [c.path for c in report.problems]
        again: dict[str, tuple[int, bool, str | None]] = {}
        if repaired:
            bad = [f for f in plan.files if f.path in repaired]
            for f in bad:
                (folder / f.path).unlink(missing_ok=True)
                _part_path(folder, f).unlink(missing_ok=True)
            check_disk_space(plan, folder, bad)
            again = _fetch_all(plan, bad, folder, token, progress, workers)
            report = _verify(folder, plan, progress, {path: digest for path, (_, _, digest) in again.items()})
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


# -- verify -----------------------------------------------------------------------------------


def _hash_into(path: Path, hasher, bar=None) -> None:
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
    return _verify(folder, plan or load_plan(folder), progress, {})


def _verify(folder: Path, plan: DownloadPlan, progress: bool, digests: dict[str, str | None]) -> VerifyReport:
    """verify_model, taking the checksums of files hashed while they were downloaded from `digests`."""
    checks = []
    to_read = [f for f in plan.files if _complete(folder, f) and not digests.get(f.path)]
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
                hasher = _hasher(f)
                _hash_into(path, hasher, bar)
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
