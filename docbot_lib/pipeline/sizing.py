"""GPU sizing for vLLM: will the model fit on a GPU, and how long a context (--max-model-len) can it serve?

From the model's config.json and the headers of its .safetensors files (never the weights themselves):

    weights   = parameters x bytes of the serving dtype (quantized tensors: their stored size)
    KV cache  = 2 (K and V) x layers x KV heads x head_dim x bytes of the KV dtype, per token
    budget    = GPU memory x --gpu-memory-utilization - weights - overhead
    tokens    = budget / KV bytes per token (in vLLM's blocks of 16 tokens)
    --max-model-len = min(tokens, max_position_embeddings)

The overhead (default 2 GiB) is our allowance for what vLLM holds besides weights and KV cache: the peak
activations of its profiling forward pass (~1 GiB for a 7B model at the default batch of tokens), CUDA graphs
(~0.5 GiB) and the non-torch memory of the CUDA context and NCCL (~0.5 GiB). vLLM measures these at start-up;
its log line "KV cache size: N tokens" is the real figure to compare with.

Layer: pipeline, step `sizing`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docbot_lib.core.errors import BadInput, NotFound

GiB = 1024**3
MiB = 1024**2
BLOCK_SIZE = 16  # vLLM allocates the KV cache in blocks of 16 tokens
DEFAULT_OVERHEAD = 2 * GiB

# bytes per element of the safetensors dtypes
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "BOOL": 1,
}
_FLOAT = {"F64", "F32", "F16", "BF16"}  # cast to the serving dtype; the others (quantized, packed) stay as stored
_TORCH_DTYPES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "float64": 8,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int  # what the driver reports (nvidia-smi), a little below the marketing figure
    compute_capability: tuple[int, int]

    @property
    def bf16(self) -> bool:
        return self.compute_capability >= (8, 0)


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("T4", 15360 * MiB, (7, 5)),
        Gpu("A10G", 23028 * MiB, (8, 6)),
        Gpu("L4", 23034 * MiB, (8, 9)),
        Gpu("A100-40GB", 40960 * MiB, (8, 0)),
        Gpu("A100-80GB", 81920 * MiB, (8, 0)),
        Gpu("H100-80GB", 81559 * MiB, (9, 0)),
    )
}


@dataclass(frozen=True)
class ModelShape:
    """What sizing needs from config.json."""

    layers: int
    kv_heads: int
    head_dim: int
    torch_dtype: str
    max_position_embeddings: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """Read a Hugging Face config.json (text models; multimodal ones keep it under text_config)."""
        cfg = dict(config.get("text_config") or config)
        cfg.setdefault("torch_dtype", config.get("torch_dtype") or config.get("dtype"))
        try:
            layers = int(cfg["num_hidden_layers"])
            heads = int(cfg["num_attention_heads"])
            kv_heads = int(cfg.get("num_key_value_heads") or heads)  # absent: multi-head attention
            head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
            max_pos = int(cfg.get("max_position_embeddings") or cfg.get("max_sequence_length") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(
                f"config.json lacks what sizing needs ({exc})",
                "give the config.json of a decoder LLM (num_hidden_layers, num_attention_heads, "
                "hidden_size or head_dim)",
            ) from None
        return cls(layers, kv_heads, head_dim, str(cfg.get("torch_dtype") or "bfloat16"), max_pos)

    def kv_bytes_per_token(self, kv_dtype: str | None = None) -> int:
        """2 (K and V) x layers x KV heads x head_dim x bytes of the cache dtype (default: the model's)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes(kv_dtype or self.torch_dtype)


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a torch dtype name ("bfloat16", "float16", "float32", "fp8")."""
    try:
        return _TORCH_DTYPES[dtype.removeprefix("torch.").lower()]
    except KeyError:
        raise BadInput(f"unknown dtype {dtype!r}", f"use one of {sorted(_TORCH_DTYPES)}") from None


# -- weights from safetensors headers --------------------------------------------------------------


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: {tensor: {"dtype", "shape", "data_offsets"}}; reads only the header."""
    path = Path(path)
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise BadInput(f"{path.name} is too short to be a safetensors file", "download it again")
        (length,) = struct.unpack("<Q", prefix)
        if length > 100 * MiB or length > path.stat().st_size - 8:
            raise BadInput(
                f"{path.name} is not a safetensors file (header length {length})", "give the model's .safetensors files"
            )
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise BadInput(f"{path.name} has a damaged safetensors header", "download it again") from None
    header.pop("__metadata__", None)
    return header


@dataclass(frozen=True)
class Weights:
    """The tensors of a model: parameters and stored bytes per safetensors dtype."""

    parameters_by_dtype: dict[str, int]

    @property
    def parameters(self) -> int:
        return sum(self.parameters_by_dtype.values())

    @property
    def stored_bytes(self) -> int:
        return sum(n * DTYPE_BYTES[d] for d, n in self.parameters_by_dtype.items())

    def serving_bytes(self, dtype: str) -> int:
        """Bytes in GPU memory when served with --dtype `dtype` (float tensors cast, others as stored)."""
        size = dtype_bytes(dtype)
        return sum(n * (size if d in _FLOAT else DTYPE_BYTES[d]) for d, n in self.parameters_by_dtype.items())


def weights_from_safetensors(paths: Iterable[str | Path]) -> Weights:
    """Count the parameters of every tensor in the files' headers (the weights are not read)."""
    counts: dict[str, int] = {}
    files = list(paths)
    if not files:
        raise BadInput("no .safetensors files given", "download the model's weights (or use weights_from_sizes)")
    for path in files:
        for name, info in read_safetensors_header(path).items():
            dtype = info.get("dtype")
            if dtype not in DTYPE_BYTES:
                raise BadInput(
                    f"{Path(path).name}: tensor {name} has unknown dtype {dtype!r}",
                    "update docbot_lib.pipeline.sizing.DTYPE_BYTES",
                )
            numel = 1
            for dim in info.get("shape", []):
                numel *= int(dim)
            counts[dtype] = counts.get(dtype, 0) + numel
    return Weights(counts)


def weights_from_sizes(file_sizes: Mapping[str, int], torch_dtype: str) -> Weights:
    """Weights estimated from the hub's file list ({path: bytes}) when only metadata is at hand.

    Sums the .safetensors files (else the .bin ones); each file's few-KiB header counts as weights.
    """
    safetensors = {p: s for p, s in file_sizes.items() if p.endswith(".safetensors")}
    chosen = safetensors or {p: s for p, s in file_sizes.items() if p.endswith(".bin") and "training" not in p}
    if not chosen:
        raise BadInput("the file list has no .safetensors or .bin weights", "check the repository id")
    names = {"bfloat16": "BF16", "float16": "F16", "half": "F16", "float32": "F32", "float": "F32", "float64": "F64"}
    dtype = names.get(torch_dtype.removeprefix("torch.").lower())
    if dtype is None:
        raise BadInput(
            f"cannot count parameters of {torch_dtype!r} weights from file sizes",
            "read the safetensors headers instead (weights_from_safetensors)",
        )
    return Weights({dtype: sum(chosen.values()) // DTYPE_BYTES[dtype]})


# -- fitting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFit:
    """How the model fits one GPU (per GPU of a tensor-parallel group when gpus > 1)."""

    gpu: Gpu
    gpus: int
    dtype: str
    weights_bytes: int
    kv_bytes_per_token: int
    kv_budget_bytes: int
    kv_tokens: int
    max_model_len: int  # the largest usable --max-model-len (0: does not fit)
    warnings: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.max_model_len > 0


def fit(
    shape: ModelShape,
    weights: Weights,
    gpu: Gpu | str,
    *,
    gpus: int = 1,
    dtype: str = "auto",
    gpu_memory_utilization: float = 0.9,
    overhead_bytes: int = DEFAULT_OVERHEAD,
    kv_cache_dtype: str = "auto",
    min_model_len: int = 1024,
) -> GpuFit:
    """Size one GPU type. `dtype="auto"` is the model's dtype, or float16 where the GPU has no bf16 (T4)."""
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise BadInput(f"unknown GPU {gpu!r}", f"use one of {list(GPUS)} or pass a sizing.Gpu")
        gpu = GPUS[gpu]
    if not 0 < gpu_memory_utilization <= 1:
        raise BadInput(f"gpu_memory_utilization={gpu_memory_utilization} is outside (0, 1]", "use e.g. 0.9")
    warnings = []
    served = shape.torch_dtype if dtype == "auto" else dtype
    if served in ("bfloat16",) and not gpu.bf16:
        warnings.append(
            f"{gpu.name} (compute capability {gpu.compute_capability[0]}.{gpu.compute_capability[1]}) "
            "cannot run bfloat16: serve with --dtype float16"
        )
        served = "float16"
    if served in ("float32", "float") and dtype == "auto":
        served = "bfloat16" if gpu.bf16 else "float16"  # vLLM serves float32 checkpoints in 16 bits by default
    kv_dtype = served if kv_cache_dtype == "auto" else kv_cache_dtype
    # tensor parallelism splits weights and KV heads across the GPUs; the overhead is paid on each
    weights_bytes = -(-weights.serving_bytes(served) // gpus)
    kv_per_token = -(-shape.kv_bytes_per_token(kv_dtype) // gpus)
    budget = int(gpu.memory_bytes * gpu_memory_utilization) - weights_bytes - overhead_bytes
    tokens = max(0, budget // kv_per_token // BLOCK_SIZE * BLOCK_SIZE)
    limit = shape.max_position_embeddings or tokens
    max_len = min(tokens, limit)
    if budget <= 0:
        warnings.append(
            f"the weights ({weights_bytes / GiB:.1f} GiB) and overhead do not fit in "
            f"{gpu_memory_utilization:.0%} of {gpu.memory_bytes / GiB:.1f} GiB: use a larger GPU, "
            "tensor parallelism, or a quantized (AWQ/GPTQ) model"
        )
        max_len = 0
    elif max_len < min_model_len:
        warnings.append(f"only {tokens} tokens of KV cache: below the {min_model_len} a chat needs")
        max_len = 0
    return GpuFit(gpu, gpus, served, weights_bytes, kv_per_token, max(budget, 0), tokens, max_len, tuple(warnings))


@dataclass(frozen=True)
class SizingReport:
    """The fits of one model on several GPUs; `str()` is a table to print."""

    model: str
    shape: ModelShape
    weights: Weights
    fits: tuple[GpuFit, ...]
    gpu_memory_utilization: float
    overhead_bytes: int

    def __str__(self) -> str:
        kib = self.shape.kv_bytes_per_token() / 1024
        lines = [
            f"model {self.model}: {self.weights.parameters / 1e9:.2f} B parameters, "
            f"{self.weights.stored_bytes / GiB:.2f} GiB ({self.weights.stored_bytes / 1e9:.1f} GB) of weights "
            f"as stored ({self.shape.torch_dtype}); "
            f"KV cache {kib:g} KiB per token; context up to {self.shape.max_position_embeddings} tokens",
            f"assumed: --gpu-memory-utilization {self.gpu_memory_utilization}, "
            f"{self.overhead_bytes / GiB:g} GiB for activations, CUDA graphs and the CUDA context",
            "",
            f"{'GPU':<10} {'memory':>9} {'dtype':<9} {'weights':>9} {'KV budget':>10} {'KV tokens':>10} "
            f"{'--max-model-len':>16} {'seqs at that len':>16}",
        ]
        for f in self.fits:
            gpu = f.gpu.name + (f" x{f.gpus}" if f.gpus > 1 else "")
            lines.append(
                f"{gpu:<10} {f.gpu.memory_bytes / GiB:>6.1f}GiB {f.dtype:<9} "
                f"{f.weights_bytes / GiB:>6.2f}GiB {f.kv_budget_bytes / GiB:>7.2f}GiB "
                f"{f.kv_tokens:>10} {f.max_model_len if f.fits else 'does not fit':>16} "
                f"{f.kv_tokens // f.max_model_len if f.fits else '-':>16}"
            )
            lines += [f"{'':<10} ! {w}" for w in f.warnings]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):  # IPython display
        printer.text(str(self))


def gpu_report(
    config: Mapping[str, Any] | str | Path,
    weights: Weights | None = None,
    *,
    model: str | None = None,
    gpus: Iterable[str | Gpu] | None = None,
    tensor_parallel: int = 1,
    gpu_memory_utilization: float = 0.9,
    overhead_bytes: int = DEFAULT_OVERHEAD,
) -> SizingReport:
    """Size a model on each GPU (default: all of `GPUS`).

    `config` is a config.json dict, or a model folder (config.json + *.safetensors headers are read);
    with a dict, give `weights` (`weights_from_safetensors` or `weights_from_sizes`).
    """
    if isinstance(config, (str, Path)):
        folder = Path(config)
        if not (folder / "config.json").is_file():
            raise NotFound(f"no config.json in {folder}", "download the model first (notebook 01)")
        model = model or folder.name
        cfg = json.loads((folder / "config.json").read_text())
        weights = weights or weights_from_safetensors(sorted(folder.glob("*.safetensors")))
    else:
        cfg = dict(config)
        if weights is None:
            raise BadInput(
                "no weights given for the config",
                "pass weights=weights_from_safetensors(...) or weights_from_sizes(...)",
            )
    shape = ModelShape.from_config(cfg)
    chosen = [GPUS[g] if isinstance(g, str) and g in GPUS else g for g in (gpus or GPUS.values())]
    fits = tuple(
        fit(
            shape,
            weights,
            g,
            gpus=tensor_parallel,
            gpu_memory_utilization=gpu_memory_utilization,
            overhead_bytes=overhead_bytes,
        )
        for g in chosen
    )
    return SizingReport(
        model or str(cfg.get("_name_or_path") or (cfg.get("architectures") or ["model"])[0]),
        shape,
        weights,
        fits,
        gpu_memory_utilization,
        overhead_bytes,
    )


# The lab's cluster model as published (config.json of mistralai/Mistral-7B-Instruct-v0.2 and its parameter
# count from the safetensors headers): sizing before 14.5 GB are downloaded, and on the local stack.
MISTRAL_7B_INSTRUCT_V02 = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}
MISTRAL_7B_INSTRUCT_V02_PARAMETERS = 7_241_732_096


def published_report(**options: Any) -> SizingReport:
    """The sizing of Mistral-7B-Instruct-v0.2 from its published config (no download needed)."""
    return gpu_report(
        MISTRAL_7B_INSTRUCT_V02,
        Weights({"BF16": MISTRAL_7B_INSTRUCT_V02_PARAMETERS}),
        model="mistralai/Mistral-7B-Instruct-v0.2",
        **options,
    )
