"""Put the downloaded model into S3 (MinIO / ODF / AWS) where KServe reads it, and make the data connection.

Layout: `s3://<bucket>/models/<model id>/<file>`, the Hugging Face id unchanged
(`models/mistralai/Mistral-7B-Instruct-v0.2/config.json`): the prefix says which model it holds, and the
InferenceService's `storageUri` is `storage_uri(settings, prefix)`. Hidden files and folders of the model
folder (`.cache/`, `.gitattributes`) are not uploaded.

Identical means exact: every object carries `x-amz-meta-sha256` (the file's SHA-256, which is also its
Hugging Face LFS id) and `x-amz-meta-part-size`. It is sent with the S3 additional checksum
`ChecksumAlgorithm="CRC32"`, so the server checks every part and keeps a checksum of what it received: the
file's CRC32 for a single PUT, for a multipart object the "composite" CRC32 of the part CRCs (`<b64>-N` on
AWS, without `-N` on moto 5.2.5). An object is identical to a local file when the size, the sha256 metadata
and, where the server reports one, that CRC32 recomputed locally all match. CRC32 rather than SHA256 for the transfer: the SHA-256 identity is computed
once locally, and the client and the server each hashing every part again with SHA-256 made uploads
slower on 2 cores (bench/s3_upload.py). Local digests are cached in
`<model folder>/.cache/docbot/sha256.json` by (size, mtime), as rsync and git do.

Never half-written: a single PUT is atomic and a multipart object only appears on CompleteMultipartUpload;
s3transfer aborts a multipart upload that fails; an object that does not verify is deleted; uploads left
behind by a killed run are aborted at the next run's start (so run one upload per prefix at a time). A run
can be interrupted: the next one skips every object already there and identical (resume is per file).

The step in four modules: `bucket` (where the model lives, the bucket's operations), `digest` (what makes an
object identical to its file), `upload` (upload and verify) and `connection` (the data connection Secret).

Layer: pipeline, step `s3`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.s3.bucket import learner_model_prefix, list_objects, model_prefix, storage_uri
from docbot_lib.pipeline.s3.connection import (
    apply_data_connection,
    data_connection_secret,
    data_connection_secret_name,
    to_yaml,
)
from docbot_lib.pipeline.s3.digest import model_files
from docbot_lib.pipeline.s3.upload import CONCURRENCY, PART_SIZE, UploadReport, VerifyReport, upload_model, verify_model

__all__ = [
    "CONCURRENCY",
    "PART_SIZE",
    "UploadReport",
    "VerifyReport",
    "apply_data_connection",
    "data_connection_secret",
    "data_connection_secret_name",
    "learner_model_prefix",
    "list_objects",
    "model_files",
    "model_prefix",
    "storage_uri",
    "to_yaml",
    "upload_model",
    "verify_model",
]
