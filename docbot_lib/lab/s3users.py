"""An S3 user per learner through the storage's IAM API (AWS, Ceph RGW / ODF, the local moto), whose policy allows
their prefix of the class's bucket and nothing else.

Layer: top (lab): imports any layer below.
"""

from __future__ import annotations

from typing import Any

from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.names import LabNames
from docbot_lib.core.settings import Settings

S3_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def s3_user(names: LabNames) -> str:
    return f"docbot-{names.user}"


def learner_s3_policy(bucket: str, names: LabNames) -> dict[str, Any]:
    """The learner's S3 policy (AWS's policy language, which MinIO and Ceph RGW read too): list, read and write
    under their prefix `<user>/` of the class's bucket, and nothing else. For MinIO, which has no IAM API:
    `mc admin policy create ALIAS docbot-<user> policy.json` then `mc admin policy attach ALIAS docbot-<user>
    --user docbot-<user>` (README: the lab's administrator)."""
    prefix = names.s3_prefix
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": S3_ACTIONS, "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"},
        ],
    }


def _iam(settings: Settings):
    """The storage's IAM API, as the administrator (the class's S3 key)."""
    import boto3

    return boto3.client(
        "iam",
        endpoint_url=settings.s3_endpoint or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.secret("s3_secret_key"),
    )


def _iam_error(exc: Exception, doing: str) -> DocbotError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return ServiceUnavailable(
        f"the S3 service refused to {doing} ({code})",
        "the class's S3 key needs IAM rights (iam:CreateUser, PutUserPolicy, CreateAccessKey, "
        "DeleteUser...); on MinIO, which has no IAM API, create the users with `mc admin` and leave "
        "out --s3-users (README: the lab's administrator)",
        service="s3",
    )


def ensure_s3_user(settings: Settings, names: LabNames, stored: tuple[str, str] | None) -> tuple[tuple[str, str], str]:
    """The learner's S3 user with their policy; returns (their key, "created" | "already there"). `stored` is the
    key their data connection holds (kept when it still belongs to the user); else a new key replaces the old."""
    import json

    from botocore.exceptions import BotoCoreError, ClientError

    iam, user = _iam(settings), s3_user(names)
    try:
        try:
            iam.create_user(UserName=user, Tags=[{"Key": "app.kubernetes.io/part-of", "Value": "docbot"}])
            state = "created"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            state = "already there"
        iam.put_user_policy(
            UserName=user,
            PolicyName="docbot-learner",
            PolicyDocument=json.dumps(learner_s3_policy(settings.s3_bucket, names)),
        )
        keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
        if stored is not None and stored[0] in keys:
            return stored, state
        for old in keys:  # a key whose secret nobody kept is of no use, and IAM allows two a user
            iam.delete_access_key(UserName=user, AccessKeyId=old)
        key = iam.create_access_key(UserName=user)["AccessKey"]
    except (BotoCoreError, ClientError) as exc:
        raise _iam_error(exc, f"create the S3 user {user}") from None
    return (key["AccessKeyId"], key["SecretAccessKey"]), "created"


def drop_s3_user(settings: Settings, names: LabNames) -> str:
    """Remove the learner's S3 user (keys and policy first); "removed" or "absent". Their objects stay in the
    bucket under `<user>/` for the administrator to keep or delete."""
    from botocore.exceptions import BotoCoreError, ClientError

    iam, user = _iam(settings), s3_user(names)
    try:
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        for policy in iam.list_user_policies(UserName=user)["PolicyNames"]:
            iam.delete_user_policy(UserName=user, PolicyName=policy)
        iam.delete_user(UserName=user)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            return "absent"
        raise _iam_error(exc, f"remove the S3 user {user}") from None
    except BotoCoreError as exc:
        raise _iam_error(exc, f"remove the S3 user {user}") from None
    return "removed"
