"""S3 clients (MinIO, ODF, AWS, moto locally): the one place Doc Bot builds a boto3 client, and botocore's
failures as typed errors that name the problem and the fix, never a secret.

    client = s3_client(settings)
    with s3_errors(settings, "uploading to s3://bucket/prefix"):
        client.put_object(...)

Layer: clients: imports only core (boto3 lazily).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from docbot_lib.core.errors import AuthRefused, ConfigError, DocbotError, NotFound, NotReachable, ServiceUnavailable
from docbot_lib.core.settings import Settings

_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
    "403",
}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NoSuchUpload", "404"}


def endpoint_name(settings: Settings) -> str:
    return settings.s3_endpoint or f"AWS S3 ({settings.s3_region})"


def s3_client(
    settings: Settings,
    *,
    max_attempts: int = 3,
    max_pool_connections: int = 10,
    connect_timeout: float = 10,
    read_timeout: float = 60,
):
    """A boto3 S3 client from the settings: the endpoint with path-style addressing (MinIO, ODF, moto),
    or AWS itself when no endpoint is set. The one place Doc Bot builds an S3 client."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key or None,
        aws_secret_access_key=settings.secret("s3_secret_key") or None,
        config=Config(
            # MinIO and ODF serve buckets as paths, not as host names; AWS prefers virtual hosts
            s3={
                "addressing_style": "path" if settings.s3_endpoint else "virtual",
                # every upload carries a CRC32 that the server checks and we compare after upload;
                # signing the payload too costs a SHA-256 of every byte (botocore does it on http://)
                "payload_signing_enabled": False,
            },
            signature_version="s3v4",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )


@contextmanager
def s3_errors(settings: Settings, doing: str) -> Iterator[None]:
    """Turn botocore's exceptions into one DocbotError naming the problem and the fix (never a secret)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    where = endpoint_name(settings)
    try:
        yield
    except DocbotError:
        raise
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _AUTH_CODES:
            raise AuthRefused(
                f"S3 at {where} refused the credentials while {doing} ({code})",
                "check DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY (or the data connection's AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY) and that this key may write to the bucket",
                service="s3",
            ) from None
        kind = NotFound if code in _MISSING_CODES else ServiceUnavailable
        raise kind(
            f"S3 at {where} answered {code} while {doing}: {error.get('Message', '')}",
            "read the message above; run again once it is fixed (finished files are skipped)",
            service="s3",
        ) from None
    except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError) as exc:
        fix = (
            "start the local stack (`docbot local up`; `docbot local status` shows its log)"
            if settings.stack == "local"
            else "check DOCBOT_S3_ENDPOINT / AWS_S3_ENDPOINT and that S3 is up"
        )
        raise NotReachable(
            f"S3 at {where} does not answer ({type(exc).__name__}) while {doing}",
            fix + "; then run again: what was uploaded and verified is skipped",
            service="s3",
        ) from None
    except NoCredentialsError:
        raise ConfigError(
            f"no S3 credentials for {where}",
            "set DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY (environment or .env), "
            "or attach a data connection to the workbench",
            service="s3",
        ) from None
    except BotoCoreError as exc:
        raise ServiceUnavailable(
            f"S3 request to {where} failed while {doing}: {exc}",
            "check the S3 settings (`docbot settings`) and run again",
            service="s3",
        ) from None
