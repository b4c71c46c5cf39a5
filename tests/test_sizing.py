"""docbot_lib.pipeline.sizing: weights from safetensors headers, KV cache per token, what fits on which GPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from docbot_lib.core.errors import DocbotError
from docbot_lib.pipeline import sizing

GiB, MiB = 1024**3, 1024**2

# mistralai/Mistral-7B-Instruct-v0.2 config.json, as published
MISTRAL_CONFIG = json.loads(
    '{"architectures":["MistralForCausalLM"],"hidden_size":4096,"intermediate_size":14336,'
    '"max_position_embeddings":32768,"num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,'
    '"rms_norm_eps":1e-05,"rope_theta":1000000.0,"sliding_window":null,"torch_dtype":"bfloat16","vocab_size":32000}'
)
MISTRAL_PARAMETERS = 7_241_732_096


@pytest.fixture
def mistral() -> tuple[sizing.ModelShape, sizing.Weights]:
    return sizing.ModelShape.from_config(MISTRAL_CONFIG), sizing.Weights({"BF16": MISTRAL_PARAMETERS})


def test_mistral_kv_cache_is_128_kib_per_token(mistral):
    shape, _ = mistral
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.max_position_embeddings) == (32, 8, 128, 32768)
    assert shape.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert shape.kv_bytes_per_token("fp8") == 64 * 1024


def test_mistral_weights_are_about_14_5_gb(mistral):
    _, weights = mistral
    assert weights.parameters == MISTRAL_PARAMETERS
    assert weights.stored_bytes == weights.serving_bytes("float16") == 14_483_464_192
    assert round(weights.stored_bytes / 1e9, 1) == 14.5


def test_mistral_on_an_a10g_serves_its_full_context(mistral):
    shape, weights = mistral
    fit = sizing.fit(shape, weights, "A10G")
    budget = int(23028 * MiB * 0.9) - 14_483_464_192 - 2 * GiB
    assert fit.fits and fit.dtype == "bfloat16" and not fit.warnings
    assert fit.kv_budget_bytes == budget
    assert fit.kv_tokens == budget // (128 * 1024) // 16 * 16 == 38912
    assert fit.max_model_len == 32768  # capped at max_position_embeddings


def test_mistral_does_not_fit_a_t4_and_t4_needs_float16(mistral):
    shape, weights = mistral
    fit = sizing.fit(shape, weights, "T4")
    assert not fit.fits and fit.max_model_len == 0 and fit.dtype == "float16"
    assert any("cannot run bfloat16: serve with --dtype float16" in w for w in fit.warnings)
    assert any("do not fit" in w for w in fit.warnings)


def test_a_smaller_memory_share_limits_the_context(mistral):
    shape, weights = mistral
    fit = sizing.fit(shape, weights, "L4", gpu_memory_utilization=0.75)
    budget = int(23034 * MiB * 0.75) - 14_483_464_192 - 2 * GiB
    assert fit.max_model_len == fit.kv_tokens == budget // (128 * 1024) // 16 * 16 < 32768
    tight = sizing.fit(shape, weights, "L4", gpu_memory_utilization=0.6915)  # ~68 MiB left: 540 tokens
    assert not tight.fits and 0 < tight.kv_tokens < 1024
    assert any("below the 1024" in w for w in tight.warnings)


def test_tensor_parallel_splits_weights_and_kv_heads(mistral):
    shape, weights = mistral
    single, double = sizing.fit(shape, weights, "A10G"), sizing.fit(shape, weights, "A10G", gpus=2)
    assert double.weights_bytes == single.weights_bytes // 2
    assert double.kv_bytes_per_token == single.kv_bytes_per_token // 2
    assert double.kv_tokens > 4 * single.kv_tokens


def test_float32_checkpoints_are_served_in_16_bits():
    shape = sizing.ModelShape.from_config({**MISTRAL_CONFIG, "torch_dtype": "float32"})
    weights = sizing.Weights({"F32": 1_000_000_000})
    assert sizing.fit(shape, weights, "A100-40GB").dtype == "bfloat16"
    t4 = sizing.fit(shape, weights, "T4")
    assert t4.dtype == "float16" and t4.weights_bytes == 2_000_000_000


def test_report_is_printable(mistral):
    shape, weights = mistral
    report = sizing.gpu_report(MISTRAL_CONFIG, weights, model="mistralai/Mistral-7B-Instruct-v0.2")
    text = str(report)
    assert [f.gpu.name for f in report.fits] == list(sizing.GPUS)
    assert "7.24 B parameters" in text and "(14.5 GB)" in text and "128 KiB per token" in text
    t4_line = next(line for line in text.splitlines() if line.startswith("T4 "))
    assert "does not fit" in t4_line
    a10g_line = next(line for line in text.splitlines() if line.startswith("A10G "))
    assert a10g_line.split()[-2:] == ["32768", "1"]


def test_config_variants_and_errors():
    no_gqa = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "torch_dtype": "float16"}
    shape = sizing.ModelShape.from_config(no_gqa)
    assert (shape.kv_heads, shape.head_dim) == (4, 16)  # multi-head attention, hidden/heads
    text_config = {**{k: v for k, v in no_gqa.items() if k != "torch_dtype"}, "head_dim": 32}
    nested = sizing.ModelShape.from_config({"text_config": text_config, "torch_dtype": "bfloat16"})
    assert (nested.head_dim, nested.torch_dtype) == (32, "bfloat16")
    with pytest.raises(DocbotError, match="config.json lacks"):
        sizing.ModelShape.from_config({"hidden_size": 64})
    with pytest.raises(DocbotError, match="unknown GPU"):
        sizing.fit(shape, sizing.Weights({"F16": 10}), "RTX-9090")


# -- safetensors headers ---------------------------------------------------------------------------


def _tiny_model(folder):
    """A two-shard model in the Hugging Face layout, with bf16 weights and an int8 (quantized) tensor."""
    tensors = [
        {
            "embed.weight": torch.zeros(100, 16, dtype=torch.bfloat16),
            "layers.0.q.weight": torch.zeros(16, 16, dtype=torch.bfloat16),
        },
        {
            "layers.1.q.weight": torch.zeros(16, 16, dtype=torch.bfloat16),
            "layers.1.qweight": torch.zeros(8, 16, dtype=torch.int8),
            "norm.weight": torch.zeros(16, dtype=torch.float32),
        },
    ]
    folder.mkdir()
    for i, shard in enumerate(tensors, 1):
        save_file(shard, str(folder / f"model-0000{i}-of-00002.safetensors"), metadata={"format": "pt"})
    config = {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_size": 16,
        "max_position_embeddings": 2048,
        "torch_dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return tensors


def test_weights_are_counted_from_the_headers_only(tmp_path):
    tensors = _tiny_model(tmp_path / "tiny")
    files = sorted((tmp_path / "tiny").glob("*.safetensors"))
    expected: dict[str, int] = {}
    names = {torch.bfloat16: "BF16", torch.int8: "I8", torch.float32: "F32"}
    for shard in tensors:
        for t in shard.values():
            expected[names[t.dtype]] = expected.get(names[t.dtype], 0) + t.numel()
    # cut the weights off: the header alone must be enough
    for f in files:
        header_len = int.from_bytes(f.read_bytes()[:8], "little")
        f.write_bytes(f.read_bytes()[: 8 + header_len])
    weights = sizing.weights_from_safetensors(files)
    assert weights.parameters_by_dtype == expected
    assert weights.stored_bytes == (expected["BF16"] * 2 + expected["I8"] + expected["F32"] * 4)
    # float tensors follow the serving dtype, the int8 one stays as stored
    assert weights.serving_bytes("float32") == (expected["BF16"] + expected["F32"]) * 4 + expected["I8"]
    header = sizing.read_safetensors_header(files[0])
    assert header["embed.weight"]["shape"] == [100, 16] and "__metadata__" not in header


def test_report_from_a_model_folder(tmp_path):
    _tiny_model(tmp_path / "tiny")
    report = sizing.gpu_report(tmp_path / "tiny", gpus=["T4"])
    (fit,) = report.fits
    assert report.model == "tiny" and report.weights.parameters == 100 * 16 + 2 * 256 + 128 + 16
    assert fit.kv_bytes_per_token == 2 * 2 * 2 * 4 * 2  # layers, kv heads, head_dim 16/4, float16 on a T4
    assert fit.max_model_len == 2048


def test_broken_safetensors_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01")
    with pytest.raises(DocbotError, match="too short"):
        sizing.read_safetensors_header(bad)
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(DocbotError, match="not a safetensors file"):
        sizing.read_safetensors_header(bad)
    bad.write_bytes((5).to_bytes(8, "little") + b"{nope")
    with pytest.raises(DocbotError, match="damaged"):
        sizing.read_safetensors_header(bad)
    with pytest.raises(DocbotError, match="no config.json"):
        sizing.gpu_report(tmp_path)


def test_weights_from_the_hub_file_list():
    files = {
        "model-00001-of-00002.safetensors": 10_000_000_000,
        "model-00002-of-00002.safetensors": 4_483_464_192,
        "pytorch_model-00001-of-00002.bin": 9_999_999_999,
        "config.json": 596,
        "tokenizer.model": 493_443,
    }
    weights = sizing.weights_from_sizes(files, "bfloat16")
    assert weights.parameters == 14_483_464_192 // 2 and weights.stored_bytes == 14_483_464_192
    only_bin = {"pytorch_model.bin": 4_000, "training_args.bin": 7_000}
    assert sizing.weights_from_sizes(only_bin, "float32").parameters == 1_000
    with pytest.raises(DocbotError, match="no .safetensors or .bin"):
        sizing.weights_from_sizes({"config.json": 1}, "bfloat16")
