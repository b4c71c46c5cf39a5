"""Where a model lives in S3 (`models/<model id>/`, a learner's own prefix in a class) and the bucket operations the
upload needs: create the bucket, list and head objects, abort what an interrupted upload left.

Layer: pipeline, step `s3` (the bucket): imports core and clients.
"""

from __future__ import annotations

import re
from typing import Any

from docbot_lib.clients.s3 import endpoint_name
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
)
from docbot_lib.core.settings import Settings

_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- where things go ---------------------------------------------------------------------------
def model_prefix(model_id: str) -> str:
    """`models/<model id>/` for a Hugging Face id such as `mistralai/Mistral-7B-Instruct-v0.2`."""
    parts = model_id.strip("/").split("/")
    if not model_id.strip("/") or not all(_NAME_PART.match(p) and p not in (".", "..") for p in parts):
        raise BadInput(
            f"{model_id!r} is not a model id", "use the Hugging Face id, e.g. 'mistralai/Mistral-7B-Instruct-v0.2'"
        )
    return "models/" + "/".join(parts) + "/"


def learner_model_prefix(settings) -> str:
    """Where the settings' model goes in the bucket: `<user>/models/<model id>/` for a learner of a class
    (docbot_lib.core.names: the bucket is shared, the prefix is theirs), else `models/<model id>/`."""
    return settings.names.s3_prefix + model_prefix(settings.model_id)


def storage_uri(settings: Settings, prefix: str) -> str:
    """The `s3://bucket/prefix` an InferenceService's storageUri names (no trailing slash)."""
    return f"s3://{settings.s3_bucket}/{prefix.strip('/')}"


def ensure_bucket(client, settings: Settings) -> bool:
    """Create the settings' bucket when it does not exist; True when it was created."""
    from botocore.exceptions import ClientError

    bucket = settings.s3_bucket
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403:
            raise AuthRefused(
                f"S3 at {endpoint_name(settings)} refused the credentials for bucket {bucket!r} (403)",
                "check DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY (or the data connection's AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY), or choose a bucket this key may use (DOCBOT_S3_BUCKET)",
                service="s3",
            ) from None
        if status != 404:
            raise
    args: dict[str, Any] = {"Bucket": bucket}
    if not settings.s3_endpoint and settings.s3_region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        client.create_bucket(**args)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def abort_incomplete_uploads(client, bucket: str, prefix: str) -> int:
    """Abort the multipart uploads left under the prefix by a run that was killed; how many there were."""
    aborted = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def list_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under the prefix."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


# -- comparing an object with a file ----------------------------------------------------------------
def head(client, bucket: str, key: str) -> dict | None:
    """The object's size, metadata and checksum (None when absent)."""
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise


def recorded_part_size(obj: dict) -> int | None:
    value = obj.get("Metadata", {}).get("part-size", "")
    return int(value) if value.isdigit() else None


def normal_prefix(prefix: str) -> str:
    parts = [p for p in prefix.strip().strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise BadInput(f"{prefix!r} is not an S3 prefix", "use e.g. 'models/mistralai/Mistral-7B-Instruct-v0.2/'")
    return "/".join(parts) + "/"
