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

The step in four modules: `plan` (which files, from which commit), `download` (resumable, hashed as it arrives),
`verify` (against the hub's checksums, offline) and `errors` (the hub's failures as errors naming the fix).

Layer: pipeline, step `hub`: imports core (the first step).
"""

from docbot_lib.pipeline.hub.download import DownloadResult, check_disk_space, download_model
from docbot_lib.pipeline.hub.plan import (
    DownloadPlan,
    ModelFile,
    describe_endpoint,
    hf_token,
    hub_endpoint,
    human_size,
    load_plan,
    model_folder,
    plan_download,
)
from docbot_lib.pipeline.hub.verify import VerifyReport, verify_model

__all__ = [
    "DownloadPlan",
    "DownloadResult",
    "ModelFile",
    "VerifyReport",
    "check_disk_space",
    "describe_endpoint",
    "download_model",
    "hf_token",
    "hub_endpoint",
    "human_size",
    "load_plan",
    "model_folder",
    "plan_download",
    "verify_model",
]
