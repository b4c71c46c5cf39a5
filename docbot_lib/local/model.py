"""The model on this machine, as KServe runs it on the cluster: the storage initializer's copy from S3 into
/mnt/models (`storage_initialize`), then the model server on that folder (`serve_local`: llama.cpp's
OpenAI-compatible server on the .gguf, where the cluster runs vLLM on the safetensors). Notebook 03 locally.

Layer: local (imports core, clients, pipeline, local.stack).
"""

from __future__ import annotations

from collections.abc import Callable

from docbot_lib.core.errors import NotFound, ServiceUnavailable
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.s3 import learner_model_prefix


# -- local mode: what KServe does, on one machine -------------------------------------------------------
def storage_initialize(settings: Settings, dest, prefix: str | None = None, progress: bool = True):
    """What KServe's storage initializer does before the model server starts: copy every object under
    s3://<bucket>/<prefix> (default the model's prefix) into `dest` (the pod's /mnt/models). Files already
    there with the same size and sha256 are kept; each file is written beside and renamed when complete,
    and checked against the sha256 recorded at upload. Returns `dest` as a Path."""
    import hashlib
    from pathlib import Path

    from boto3.s3.transfer import TransferConfig
    from tqdm.auto import tqdm

    from docbot_lib.clients.s3 import s3_client, s3_errors
    from docbot_lib.pipeline.s3.bucket import head, list_objects

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    prefix = prefix or learner_model_prefix(settings)
    bucket = settings.s3_bucket
    client = s3_client(settings)
    config = TransferConfig(multipart_chunksize=32 << 20, multipart_threshold=32 << 20, max_concurrency=4)

    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(8 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    with s3_errors(settings, f"copying s3://{bucket}/{prefix} to {dest}"):
        objects = list_objects(client, bucket, prefix)
        if not objects:
            raise NotFound(
                f"no model under s3://{bucket}/{prefix}",
                "upload it first (notebook 02), or set the S3 prefix the model was uploaded to",
                service="s3",
            )
        with tqdm(
            total=sum(objects.values()), unit="B", unit_scale=True, desc="storage-initializer", disable=not progress
        ) as bar:
            for key, size in sorted(objects.items()):
                target = dest / key[len(prefix) :]
                expected = (head(client, bucket, key) or {}).get("Metadata", {}).get("sha256")
                if (
                    target.is_file()
                    and target.stat().st_size == size
                    and (expected is None or sha256(target) == expected)
                ):
                    bar.update(size)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.part")
                client.download_file(bucket, key, str(partial), Config=config, Callback=bar.update)
                if expected and sha256(partial) != expected:
                    partial.unlink()
                    raise ServiceUnavailable(
                        f"s3://{bucket}/{key} does not match the sha256 recorded at upload",
                        "upload the model again (notebook 02)",
                        service="s3",
                    )
                partial.replace(target)
    return dest


def serve_local(settings: Settings, model_dir, echo: Callable[[str], None] = print) -> Settings:
    """Start the local OpenAI-compatible server on the model in `model_dir` (the .gguf it holds), as the
    InferenceService's vLLM container does with /mnt/models; returns the settings of the endpoint."""
    from pathlib import Path

    from docbot_lib.local.stack import LocalStack

    ggufs = sorted(Path(model_dir).glob("*.gguf"))
    if not ggufs:
        raise NotFound(
            f"no .gguf model file in {model_dir}",
            "the local server (llama.cpp) serves GGUF files; on a cluster vLLM serves safetensors",
        )
    LocalStack(settings).serve_model(ggufs[0], echo=echo)
    return settings.reload()
