"""What to download from the Hugging Face hub: the revision resolved to its commit, the files listed, one weight
format chosen (safetensors, else .bin, else one GGUF), and the plan kept in the model folder.

Layer: pipeline, step `hub` (its plan): imports core and hub.errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import HfApi, RepoFile, constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    OfflineModeIsEnabled,
)

from docbot_lib.core.envfile import project_dir
from docbot_lib.core.errors import (
    BadInput,
    NotFound,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.hub.errors import TOKEN_FILE, hub_errors

HF_HUB = "https://huggingface.co"
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
    with hub_errors(settings, endpoint, repo_id, revision, token is not None):
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


# -- disk -------------------------------------------------------------------------------------


def model_folder(settings: Settings, repo_id: str | None = None) -> Path:
    """Where a model is downloaded: `settings.model_path / owner / name`."""
    return settings.model_path / (repo_id or settings.model_id)


def part_path(folder: Path, f: ModelFile) -> Path:
    # named by content: a partial file of another version of the same path is never resumed by mistake
    return folder / STATE_DIR / "parts" / f"{f.sha256 or f.blob_id}.part"


def is_complete(folder: Path, f: ModelFile) -> bool:
    final = folder / f.path
    return final.is_file() and final.stat().st_size == f.size


# -- download ---------------------------------------------------------------------------------


def load_plan(folder: Path) -> DownloadPlan:
    """The plan `download_model` saved in a model folder (what was downloaded, with the hub's checksums)."""
    path = Path(folder) / STATE_DIR / "plan.json"
    if not path.is_file():
        raise NotFound(
            f"{folder} holds no model downloaded by Doc Bot (no {STATE_DIR}/plan.json)",
            "download it first: `download_model(settings)` (notebook 01-download-model)",
        )
    return DownloadPlan.from_json(path.read_text())


def save_plan(plan: DownloadPlan, folder: Path) -> None:
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
    wanted = {part_path(folder, f).name for f in plan.files}
    for stale in (state / "parts").glob("*.part") if (state / "parts").is_dir() else []:
        if stale.name not in wanted:
            stale.unlink()


# -- verify -----------------------------------------------------------------------------------
