"""The hub's failures (gated, no access, no such repo or revision, a refused token, offline, a full disk) as the
one Doc Bot error that names the fix; the token never appears.

Layer: pipeline, step `hub` (its errors): imports core and hub.plan's names.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager

import httpx
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from docbot_lib.core.envfile import project_dir
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings

TOKEN_FILE = ".hf-token"


@contextmanager
def hub_errors(settings: Settings, endpoint: str, repo_id: str, revision: str, token_set: bool):
    """Turn the hub client's errors into one DocbotError naming the problem and the fix."""
    try:
        yield
    except DocbotError:
        raise
    except Exception as exc:
        error = _explain(exc, settings, endpoint, repo_id, revision, token_set)
        if error is None:
            raise
        raise error from None


def _explain(
    exc: Exception, settings: Settings, endpoint: str, repo_id: str, revision: str, token_set: bool
) -> DocbotError | None:
    repo, hub, page = repo_id, endpoint, f"{endpoint}/{repo_id}"
    where = "the environment variable HF_TOKEN (or .env)" + f", or a file {project_dir() / TOKEN_FILE}"
    if isinstance(exc, GatedRepoError):
        if not token_set:
            return AuthRefused(
                f"{repo} is a gated model and no Hugging Face token is set (HTTP {exc.response.status_code})",
                f"log in at {hub}, open {page} and accept its conditions to get access; create a read token "
                f"at {hub}/settings/tokens and put it in {where} (never in the notebook)",
                service="hub",
            )
        return PermissionDenied(
            f"the Hugging Face token in use has no access to the gated model {repo} (HTTP {exc.response.status_code})",
            f"open {page} logged in as the token's owner and accept the model's conditions (access may take "
            f"a while to be granted), or use the token of an account that has access, in {where}",
            service="hub",
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(
            f"revision {revision!r} not found in {repo} at {hub}",
            f"set MODEL_REVISION (DOCBOT_MODEL_REVISION) to a branch, tag or commit sha listed "
            f"at {page}/commits/main, or to 'main'",
            service="hub",
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return ServiceUnavailable(
            f"the hub lists a file of {repo} it then does not serve: {exc.response.url}",
            "run the download again; if it persists, the repo is being changed: pin a commit sha",
            service="hub",
        )
    if isinstance(exc, RepositoryNotFoundError):
        private = "" if token_set else "; a private repo also needs a token (HF_TOKEN or .hf-token)"
        return NotFound(
            f"model repo {repo!r} not found at {hub}",
            f"check MODEL_ID (DOCBOT_MODEL_ID): owner/name as in the model page's URL{private}",
            service="hub",
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code == 401:
        return AuthRefused(
            f"the hub at {hub} refused the Hugging Face token (invalid or expired)",
            f"create a new read token at {hub}/settings/tokens and put it in {where}",
            service="hub",
        )
    if isinstance(exc, HFValidationError):
        return BadInput(
            f"{repo!r} is not a model id", "set MODEL_ID to owner/name, e.g. mistralai/Mistral-7B-Instruct-v0.2"
        )
    if isinstance(exc, OfflineModeIsEnabled):
        return ConfigError(
            "the Hugging Face client is in offline mode (HF_HUB_OFFLINE=1 in this process)",
            "unset HF_HUB_OFFLINE in the environment and restart the kernel",
            service="hub",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DocbotError(
            f"the disk filled up while downloading {repo} (something else wrote to it too?)",
            "free some space and run the download again: it resumes where it stopped",
        )
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return ServiceUnavailable(
            f"a file of {repo} arrived incomplete from {hub} (the connection ended early)",
            "run the download again: it resumes where it stopped",
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return ServiceUnavailable(
            f"the hub at {hub} answered HTTP {status} for {repo}",
            "try again in a few minutes (a download resumes where it stopped)",
        )
    if isinstance(exc, (httpx.HTTPError, ConnectionError)):
        if settings.stack == "local":
            fix = "start the local stack (`docbot local up` or `make lab`); its stand-in hub serves the model"
        else:
            fix = (
                f"check the network from this workbench to {hub} (proxy?) and HF_ENDPOINT; "
                "run again to resume what was downloaded"
            )
        return ServiceUnavailable(f"cannot reach the hub at {hub} ({type(exc).__name__}: {exc})", fix)
    return None
