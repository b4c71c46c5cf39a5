"""02-upload-model-to-s3.ipynb executed for real (papermill) against the local stack's S3, on a small model folder."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import nbformat

from docbot_lib.clients.s3 import s3_client
from docbot_lib.core.settings import Settings
from docbot_lib.pipeline import s3
from docbot_lib.workshop import execute

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "02-upload-model-to-s3.ipynb"


def output_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        out.get("text", "") if isinstance(out.get("text"), str) else str(out.get("evalue", ""))
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )


def test_the_notebook_uploads_verifies_and_shows_the_data_connection_masked(settings, tmp_path):
    models = tmp_path / "models"
    folder = models / "test-org" / "tiny-model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(3 << 20))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    bucket = f"nb-{uuid.uuid4().hex[:12]}"
    parameters = {"MODEL_DIR": str(models), "MODEL_ID": "test-org/tiny-model", "S3_BUCKET": bucket}

    first = execute(NOTEBOOK, tmp_path / "02.ipynb", parameters=parameters)
    assert first.ok, first.error
    text = output_text(first.output)
    assert "uploaded           2 file(s)" in text
    assert "The model is in the bucket and every object verifies: 2 objects" in text
    assert f"s3://{bucket}/models/test-org/tiny-model" in text
    assert "name: aws-connection-models" in text and "AWS_SECRET_ACCESS_KEY: '******'" in text
    assert "Not applied (APPLY_TO_CLUSTER = False)." in text
    executed = first.output.read_text()
    assert settings.secret("s3_secret_key") not in executed and settings.s3_access_key not in executed

    objects = s3.list_objects(s3_client(Settings.load(s3_bucket=bucket)), bucket, "models/test-org/tiny-model/")
    assert sorted(objects) == ["models/test-org/tiny-model/config.json", "models/test-org/tiny-model/model.safetensors"]

    again = execute(NOTEBOOK, tmp_path / "02-again.ipynb", parameters=parameters)
    assert again.ok, again.error
    assert "skipped            2 file(s) already there and identical" in output_text(again.output)


def test_without_the_model_folder_the_notebook_says_to_run_01_first(local_stack, tmp_path):
    run = execute(
        NOTEBOOK,
        tmp_path / "02.ipynb",
        parameters={"MODEL_DIR": str(tmp_path / "models"), "MODEL_ID": "test-org/not-downloaded"},
    )
    assert not run.ok
    assert "NotFound" in run.error and "run 01-download-model.ipynb first" in run.error
