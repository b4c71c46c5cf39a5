"""Does each service answer? One real request per service, an OK/FAILED row with the reason and the fix.

The same checks serve the local stack (`docbot local up` waits on them) and a cluster
(`00-environment-check.ipynb`, `docbot check`). On a cluster, `check_lab` checks only what should exist at
the start of the lab (the hub, S3, the cluster login, the embeddings) and shows what a later notebook
deploys (the model: 03, Milvus: 04) as TO DO until that notebook has recorded it.

Layer: checks (above the pipeline, below local): imports core, clients, k8s and pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from docbot_lib.clients.llm import llm_headers, llm_serves_model
from docbot_lib.clients.milvus import milvus_client
from docbot_lib.clients.net import tcp_open
from docbot_lib.core.errors import (
    AuthRefused,
    BadInput,
    ConfigError,
    DocbotError,
    NotReachable,
    PermissionDenied,
    ServiceUnavailable,
)
from docbot_lib.core.settings import Settings


def check_s3(settings: Settings) -> str:
    """List the buckets (proves endpoint and credentials); say whether the lab's bucket exists."""
    from botocore.exceptions import BotoCoreError, ClientError

    from docbot_lib.clients.s3 import s3_client

    if not settings.s3_endpoint and settings.stack == "local":
        raise ConfigError("no S3 endpoint configured", settings.start_hint("DOCBOT_S3_ENDPOINT"), service="s3")
    if settings.s3_endpoint and not tcp_open(settings.s3_endpoint):
        raise NotReachable(
            f"S3 does not answer at {settings.s3_endpoint}",
            settings.start_hint("DOCBOT_S3_ENDPOINT / AWS_S3_ENDPOINT"),
            service="s3",
        )
    client = s3_client(settings, max_attempts=1, connect_timeout=5, read_timeout=10)
    try:
        buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise AuthRefused(
            f"S3 at {settings.s3_endpoint} refused the credentials ({code})",
            "check DOCBOT_S3_ACCESS_KEY / DOCBOT_S3_SECRET_KEY (or the data connection)",
            service="s3",
        ) from None
    except BotoCoreError as exc:
        raise ServiceUnavailable(
            f"S3 request failed: {exc}", settings.start_hint("the S3 settings"), service="s3"
        ) from None
    state = "exists" if settings.s3_bucket in buckets else "not created yet"
    return f"{settings.s3_endpoint or 'AWS'}: {len(buckets)} bucket(s); bucket {settings.s3_bucket!r} {state}"


def check_llm(settings: Settings) -> str:
    """List the served models and ask for a one-word chat completion."""
    base = llm_serves_model(settings)
    try:
        reply = httpx.post(
            f"{base}/chat/completions",
            timeout=30,
            headers=llm_headers(settings),
            json={
                "model": settings.llm_model_name,
                "max_tokens": 8,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Say OK."}],
            },
        )
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            f"the LLM at {base} failed to answer ({type(exc).__name__}: {exc})",
            settings.start_hint("DOCBOT_LLM_BASE_URL"),
            service="llm",
        ) from None
    tokens = reply.json().get("usage", {}).get("completion_tokens", "?")
    return f"{base}: model {settings.llm_model_name!r} answered ({tokens} tokens)"


def check_milvus(settings: Settings) -> str:
    """Connect and list the collections."""
    client = milvus_client(settings)
    try:
        names = client.list_collections()
        version = client.get_server_version()
    finally:
        client.close()
    return f"{settings.milvus_uri}: Milvus {version}, {len(names)} collection(s)"


def check_embeddings(settings: Settings) -> str:
    """Embed one sentence."""
    from docbot_lib.clients.embeddings import get_embeddings

    try:
        vector = get_embeddings(settings).embed_query("Is the embedding model here?")
    except DocbotError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the model is reported, not raised
        raise ServiceUnavailable(
            f"embedding failed: {type(exc).__name__}: {exc}",
            "check DOCBOT_EMBEDDING_MODEL / DOCBOT_EMBEDDING_BASE_URL",
            service="embeddings",
        ) from None
    return f"{settings.embedding_model}: {len(vector)}-d vector"


def check_milvus_server(settings: Settings) -> str:
    """The Milvus the day-2 steps use, when it is not the documents' one (locally: the Milvus 2.3 server
    beside Milvus Lite): it answers a login (accepted or refused: both are the server speaking)."""

    uri = settings.day2_milvus_uri
    if uri == settings.milvus_uri:
        return f"{uri}: the same Milvus as above (day 2 runs there)"
    assert uri is not None  # day2_milvus_uri is None only when milvus_uri is None too (returned above)
    if not milvus_server_answers(uri):
        raise NotReachable(
            f"the Milvus server for day 2 does not answer at {uri}",
            settings.start_hint("DOCBOT_MILVUS_SERVER_URI"),
            service="milvus",
        )
    return f"{uri}: Milvus server, auth on (notebook 04's day 2: root password, users, roles)"


CHECKS: dict[str, Callable[[Settings], str]] = {
    "S3": check_s3,
    "LLM": check_llm,
    "Milvus": check_milvus,
    "Milvus day 2": check_milvus_server,
    "embeddings": check_embeddings,
}


@dataclass(frozen=True)
class CheckResult:
    service: str
    ok: bool
    detail: str  # what answered, or what failed
    fix: str = ""
    seconds: float = 0.0
    later: bool = False  # not expected yet: a later notebook creates it (ok stays True)

    @property
    def status(self) -> str:
        return "TO DO" if self.later else "OK" if self.ok else "FAILED"


def run_check(name: str, settings: Settings, check: Callable[[Settings], str] | None = None) -> CheckResult:
    """One check (by name, or the given function) as a row: a failure is reported, never raised."""
    start = time.perf_counter()
    try:
        detail = (check or CHECKS[name])(settings)
    except DocbotError as exc:
        return CheckResult(name, False, exc.problem, exc.fix, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
        return CheckResult(
            name, False, f"{type(exc).__name__}: {exc}", "see the message above", time.perf_counter() - start
        )
    return CheckResult(name, True, detail, "", time.perf_counter() - start)


class CheckReport(list):
    """The results of `check_all`, printable as a table (also in a notebook); `place` says where it ran."""

    place: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    def failed(self) -> list[CheckResult]:
        return [r for r in self if not r.ok]

    def __str__(self) -> str:
        width = max(len("service"), *(len(r.service) for r in self))
        lines = [f"running in: {self.place}", ""] if self.place else []
        lines += [f"{'service':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
        for r in self:
            lines.append(f"{r.service:<{width}}  {r.status:<6}  {r.detail}")
            if r.fix:
                lines.append(f"{'':<{width}}  {'':<6}  fix: {r.fix}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):  # IPython display
        printer.text(str(self))


def check_all(settings: Settings, services: list[str] | None = None) -> CheckReport:
    """Check every service (or the ones named); a failing service is reported, never raised."""
    unknown = set(services or []) - set(CHECKS)
    if unknown:
        raise BadInput(f"unknown service(s) {sorted(unknown)}", f"choose among {list(CHECKS)}")
    return CheckReport(run_check(name, settings) for name in (services or list(CHECKS)))


# -- the start of the lab on a cluster ----------------------------------------------------------------


def where_it_runs(settings: Settings) -> str:
    """Where the lab runs, in a learner's words: this machine, or an OpenShift AI workbench (with or without
    S3 credentials, which a data connection attached to the workbench injects)."""
    from docbot_lib.clients.kube import SERVICE_ACCOUNT_DIR

    s3 = (
        "S3 credentials set (a data connection, or .env)"
        if settings.s3_access_key and settings.s3_secret_key
        else "no S3 credentials: attach a data connection to the workbench (or set AWS_* in .env)"
    )
    if settings.names.user:
        s3 += f"; learner {settings.names.user} (Milvus database {settings.names.database})"
    if (SERVICE_ACCOUNT_DIR / "namespace").is_file():
        namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
        return f"an OpenShift AI workbench in project {namespace!r}, stack {settings.stack}; {s3}"
    if settings.stack == "local":
        return "this machine, on the local stack (`docbot local up`)"
    return f"this machine, against a cluster; {s3}"


def check_hub(settings: Settings) -> str:
    """The model's repo on the hub answers, and the token may download it (a gated model needs one)."""
    from docbot_lib.pipeline.hub import human_size, plan_download

    plan = plan_download(settings)
    access = "gated: your token has access" if plan.gated else "public"
    return f"{plan.repo_id}@{plan.revision}: {len(plan.files)} files, {human_size(plan.total_bytes)} ({access})"


def check_kubernetes(settings: Settings) -> str:
    """Who the cluster sees, in which project, and whether that login may deploy the lab there
    (create InferenceServices, Deployments, Secrets: a SelfSubjectAccessReview each)."""
    from docbot_lib.clients.kube import current_namespace, kube_api_client, kube_request, whoami

    api = kube_api_client()
    namespace = current_namespace(settings)
    user = whoami(api)
    who = f"{user} ({api.docbot_source})" if user else api.docbot_source
    missing = []
    for group, resource in (("serving.kserve.io", "inferenceservices"), ("apps", "deployments"), ("", "secrets")):
        review = kube_request(
            api,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": "create",
                        "group": group,
                        "resource": resource,
                    }
                },
            },
        )
        if not (review.get("status") or {}).get("allowed"):
            missing.append(resource)
    if missing:
        raise PermissionDenied(
            f"{who} may not create {', '.join(missing)} in project {namespace!r}",
            f"ask the project's admin: `oc adm policy add-role-to-user edit {user or 'YOU'} "
            f"-n {namespace}`; in a workbench, `oc login` as yourself in its terminal",
            service="kubernetes",
        )
    return f"{who} may deploy into project {namespace!r}"


# notebook that records each later service (LLM: its endpoint; Milvus: its URI)
_DEPLOYED_BY = {
    "LLM": ("llm_base_url", "03-serve-model.ipynb serves the model and records its endpoint"),
    "Milvus": ("milvus_uri", "04-deploy-milvus.ipynb deploys Milvus and records its URI"),
}
CLUSTER_CHECKS: dict[str, Callable[[Settings], str]] = {
    "Hugging Face": check_hub,
    "S3": check_s3,
    "Kubernetes": check_kubernetes,
    "LLM": check_llm,
    "Milvus": check_milvus,
    "embeddings": check_embeddings,
}


def check_lab(settings: Settings) -> CheckReport:
    """What notebook 00 shows. Locally: every service of the stack. On a cluster: the hub, S3, the cluster
    login and the embeddings now, and the model and Milvus once notebooks 03 and 04 have recorded them
    (TO DO rows before that, saying which notebook makes them)."""
    if settings.stack == "local":
        report = check_all(settings)
    else:
        report = CheckReport()
        for name, check in CLUSTER_CHECKS.items():
            field, later = _DEPLOYED_BY.get(name, (None, ""))
            if field and not getattr(settings, field):
                report.append(
                    CheckResult(
                        name,
                        True,
                        "not deployed yet",
                        f"{later} (or set DOCBOT_{field.upper()} to one that exists)",
                        later=True,
                    )
                )
                continue
            report.append(run_check(name, settings, check))
    report.place = where_it_runs(settings)
    return report


def milvus_server_answers(uri: str, health_url: str | None = None) -> bool:
    """True once the server is healthy and answers a real gRPC request: root's default password logs in, or
    is refused because day 2 changed it (both are answers)."""
    from docbot_lib.clients.milvus import DEFAULT_ROOT_TOKEN, connect
    from docbot_lib.core.errors import AuthRefused, ServiceUnavailable

    if health_url:
        try:
            if httpx.get(health_url, timeout=2).text.strip() != "OK":
                return False
        except httpx.HTTPError:
            return False
    try:
        connect(uri, DEFAULT_ROOT_TOKEN, timeout=5).close()
        return True
    except AuthRefused:
        return True
    except ServiceUnavailable:
        return False
