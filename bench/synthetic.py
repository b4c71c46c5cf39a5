"""A synthetic model folder for the benchmarks: random safetensors shards plus the small JSON files a
model repo carries (shaped like Mistral-7B's), written without holding a shard in memory."""

from __future__ import annotations

import os
from pathlib import Path

MiB = 1 << 20


def write_model(folder: Path, shard_mib: int, shards: int = 3, extra_weights: tuple[str, ...] = ()) -> int:
    """Write the folder; `extra_weights` are more weight files of the same size (e.g. a decoy
    pytorch_model.bin a download must skip). Returns the bytes of the safetensors shards."""
    folder.mkdir(parents=True)
    block = 16 * MiB
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)] + list(extra_weights)
    for name in names:
        with open(folder / name, "wb") as fh:
            for _ in range(shard_mib * MiB // block):
                fh.write(os.urandom(block))
    (folder / "config.json").write_text('{"architectures": ["MistralForCausalLM"], "hidden_size": 4096}')
    (folder / "generation_config.json").write_text('{"bos_token_id": 1, "eos_token_id": 2}')
    (folder / "model.safetensors.index.json").write_text(
        f'{{"metadata": {{"total_size": {shards * shard_mib * MiB}}}}}'
    )
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}' * 2000)
    return shards * shard_mib * MiB
