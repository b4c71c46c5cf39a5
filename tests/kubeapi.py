"""A stand-in for the Kubernetes API server, at its HTTP boundary: the real `kubernetes` client talks to it.

No API server can run here, so tests that apply manifests start this instead. It is generic: any
resource of any API group, namespaced or cluster-scoped, stored by (API path, namespace, plural, name),
e.g. ("api/v1", "docbot", "secrets", "aws-connection-models") or
("apis/serving.kserve.io/v1beta1", "docbot", "inferenceservices", "mistral").

    with KubeApi() as kube:
        api = kubernetes.client.CoreV1Api(kube.api_client())
        api.create_namespaced_secret("docbot", body)
        kube.get("api/v1", "docbot", "secrets", "aws-connection-models")   # the stored object
        kube.requests                                                        # every request, in order

What it does like the real server: POST create (201; 409 AlreadyExists), GET one / list (with an
equality `labelSelector`), PUT replace (404 when missing; 409 Conflict on a stale resourceVersion),
PATCH (JSON merge patch; a strategic merge patch is applied as a merge patch, lists replaced whole;
JSON patch add/replace/remove), DELETE, the `status` subresource; metadata.uid, resourceVersion,
creationTimestamp, generation; Secret stringData folded into base64 data; errors as `Status` bodies.
Options: `token` (401 without that bearer token), `namespaces` (404 for any other namespace),
`forbid` ({(verb, plural)} answered 403, with the real server's message naming `user`), `user` (who the
token is: `oc whoami`). `dryRun=All` answers as the write would but stores nothing. The review APIs answer as
the real server does, storing nothing: SelfSubjectReview (`oc whoami`) and SelfSubjectAccessReview
(`oc auth can-i`: allowed unless `forbid` holds the verb and resource).
OpenShift's `buildconfigs/<name>/instantiate` (`oc start-build`) creates the Build `<name>-<n>` (phase New) and
counts `status.lastVersion` as the real server does; a hook plays the build controller.
`hooks`: callables `hook(kube, request)` run before each request is answered, to play a controller
(e.g. flip an InferenceService to Ready after a few polls).
Not modelled: watch, server-side apply, admission, RBAC beyond `forbid`.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Key = tuple[str, str | None, str, str]  # (API path, namespace or None, plural, name)

VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
REVIEWS = ("selfsubjectreviews", "selfsubjectaccessreviews")  # answered, never stored
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    415: "UnsupportedMediaType",
    422: "Invalid",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # the decoded JSON body, or None
    content_type: str = ""


class KubeError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason or REASONS.get(code, ""), details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@dataclass
class Route:
    api: str  # "api/v1" or "apis/<group>/<version>"
    namespace: str | None
    plural: str
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        api, rest = "/".join(parts[:2]), parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        api, rest = "/".join(parts[:3]), parts[3:]
    else:
        raise KubeError(404, f"the server could not find the requested resource ({path})")
    if len(rest) >= 3 and rest[0] == "namespaces":
        return Route(api, rest[1], rest[2], *(rest[3:5]))
    if rest:
        return Route(api, None, rest[0], *(rest[1:3]))
    raise KubeError(404, f"the server could not find the requested resource ({path})")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: list[dict]) -> Any:
    """RFC 6902, the operations manifests use: add, replace, remove."""
    doc = copy.deepcopy(target)
    for op in operations:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                if op["op"] == "replace" and last not in parent:
                    raise KubeError(422, f"jsonpatch replace: missing {op['path']}")
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise KubeError(415, f"json patch operation {op['op']!r} is not supported by this stand-in")
    return doc


class KubeApi:
    """The stand-in server: start with `with KubeApi() as kube:` (or start()/stop())."""

    def __init__(
        self,
        token: str | None = None,
        namespaces: set[str] | None = None,
        forbid: set[tuple[str, str]] | None = None,
        user: str = "system:serviceaccount:test:default",
    ):
        self.token, self.namespaces, self.forbid, self.user = token, namespaces, forbid or set(), user
        self.objects: dict[Key, dict] = {}
        self.kinds: dict[tuple[str, str], str] = {}  # (api, plural) -> kind, learnt from created objects
        self.requests: list[Request] = []
        self.hooks: list[Callable[[KubeApi, Request], None]] = []
        self._lock = threading.Lock()
        self._version = 0
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> KubeApi:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self, token: str | None = None):
        """A real `kubernetes.client.ApiClient` pointed at this server."""
        from kubernetes import client

        config = client.Configuration(host=self.url)
        bearer = token if token is not None else self.token
        if bearer:
            config.api_key = {"BearerToken": bearer}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(config)

    def write_kubeconfig(self, path, user: str = "me", token: str | None = None, namespace: str | None = None):
        """What `oc login --token=... --server=<this server>` writes: a kubeconfig at `path` (mode 600)."""
        import yaml

        context = {"cluster": "lab", "user": user, **({"namespace": namespace} if namespace else {})}
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "lab",
                    "clusters": [{"name": "lab", "cluster": {"server": self.url}}],
                    "users": [{"name": user, "user": {"token": token or self.token or ""}}],
                    "contexts": [{"name": "lab", "context": context}],
                }
            )
        )
        path.chmod(0o600)
        return path

    # -- what tests read ------------------------------------------------------------------------
    def get(self, api: str, namespace: str | None, plural: str, name: str) -> dict | None:
        with self._lock:
            found = self.objects.get((api, namespace, plural, name))
            return copy.deepcopy(found)

    def bodies(self, method: str, path_part: str = "") -> list[Any]:
        """The bodies of the recorded requests with this method whose path contains `path_part`."""
        return [r.body for r in self.requests if r.method == method and path_part in r.path]

    def set_status(self, api: str, namespace: str | None, plural: str, name: str, status: dict) -> None:
        """Play a controller: set an object's status (e.g. an InferenceService becoming Ready)."""
        with self._lock:
            obj = self.objects[(api, namespace, plural, name)]
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = self._next_version()

    # -- the API ------------------------------------------------------------------------------
    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def handle(self, method: str, url: str, body: Any, content_type: str, authorization: str) -> tuple[int, dict]:
        split = urlsplit(url)
        query = parse_qs(split.query)
        request = Request(method, split.path, query, copy.deepcopy(body), content_type)
        with self._lock:
            self.requests.append(request)
        for hook in list(self.hooks):
            hook(self, request)
        try:
            if self.token and authorization != f"Bearer {self.token}":
                raise KubeError(401, "Unauthorized")
            route = parse_path(split.path)
            if method == "POST" and route.plural in REVIEWS:
                return 201, self._review(route.plural, body or {})
            verb = "list" if method == "GET" and route.name is None else VERBS.get(method, "")
            if (verb, route.plural) in self.forbid:
                group = route.api.split("/")[1] if route.api.startswith("apis/") else ""
                raise KubeError(
                    403,
                    f"{route.plural}{'.' + group if group else ''} is forbidden: User "
                    f'"{self.user}" cannot {verb} resource "{route.plural}" in API group '
                    f'"{group}" in the namespace "{route.namespace}"',
                    details={"kind": route.plural},
                )
            if self.namespaces is not None and route.namespace is not None and route.namespace not in self.namespaces:
                raise KubeError(
                    404,
                    f'namespaces "{route.namespace}" not found',
                    details={"name": route.namespace, "kind": "namespaces"},
                )
            with self._lock:
                if "All" not in query.get("dryRun", []):
                    return self._dispatch(method, route, query, body, content_type)
                saved = copy.deepcopy(self.objects), dict(self.kinds), self._version
                try:  # a dry run is checked like the real write, then forgotten
                    return self._dispatch(method, route, query, body, content_type)
                finally:
                    self.objects, self.kinds, self._version = saved
        except KubeError as exc:
            return exc.code, exc.status()

    def _review(self, plural: str, body: dict) -> dict:
        answer = copy.deepcopy(body)
        if plural == "selfsubjectreviews":
            answer["status"] = {"userInfo": {"username": self.user, "groups": ["system:authenticated"]}}
        else:
            attributes = (body.get("spec") or {}).get("resourceAttributes") or {}
            allowed = (attributes.get("verb"), attributes.get("resource")) not in self.forbid
            answer["status"] = {"allowed": allowed, **({} if allowed else {"reason": "no RBAC rule allows it"})}
        return answer

    def _dispatch(self, method: str, route: Route, query: dict, body: Any, content_type: str) -> tuple[int, dict]:
        key = (route.api, route.namespace, route.plural, route.name or "")
        if route.name is None:
            if method == "GET":
                return 200, self._list(route, query)
            if method == "POST":
                return 201, self._create(route, body)
            raise KubeError(405, f"{method} is not allowed on a collection")
        current = self.objects.get(key)
        if current is None:
            raise KubeError(
                404, f'{route.plural} "{route.name}" not found', details={"name": route.name, "kind": route.plural}
            )
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            del self.objects[key]
            if route.plural == "namespaces" and route.namespace is None:  # what the namespace held goes with it
                for inner in [k for k in self.objects if k[1] == route.name]:
                    del self.objects[inner]
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": route.name, "kind": route.plural, "uid": current["metadata"]["uid"]},
            }
        if method == "PUT":
            return 200, self._store(key, current, self._replace(route, current, body))
        if method == "PATCH":
            return 200, self._store(key, current, self._patch(route, current, body, content_type))
        if method == "POST" and route.plural == "buildconfigs" and route.subresource == "instantiate":
            return 201, self._instantiate(route, current)
        raise KubeError(405, f"{method} is not supported")

    def _instantiate(self, route: Route, config: dict) -> dict:
        """A new Build of the BuildConfig, as `oc start-build` makes: <name>-<lastVersion + 1>, phase New."""
        number = ((config.get("status") or {}).get("lastVersion") or 0) + 1
        config["status"] = {**(config.get("status") or {}), "lastVersion": number}
        config["metadata"]["resourceVersion"] = self._next_version()
        name = f"{route.name}-{number}"
        spec = {
            k: copy.deepcopy(v)
            for k, v in (config.get("spec") or {}).items()
            if k in ("source", "strategy", "output", "resources")
        }
        self._create(
            Route(route.api, route.namespace, "builds"),
            {
                "apiVersion": config.get("apiVersion", "build.openshift.io/v1"),
                "kind": "Build",
                "metadata": {
                    "name": name,
                    "labels": {"buildconfig": route.name},
                    "annotations": {"openshift.io/build.number": str(number)},
                },
                "spec": spec,
            },
        )
        stored = self.objects[(route.api, route.namespace, "builds", name)]
        stored["status"] = {"phase": "New", "config": {"name": route.name}}
        return copy.deepcopy(stored)

    def _list(self, route: Route, query: dict) -> dict:
        wanted = {}
        for term in ",".join(query.get("labelSelector", [])).split(","):
            if "=" in term:
                name, _, value = term.partition("=")
                wanted[name.rstrip("=!")] = value  # equality only: a=b, a==b
        in_order = sorted(self.objects.items(), key=lambda item: tuple(part or "" for part in item[0]))
        items = [
            copy.deepcopy(obj)
            for (api, ns, plural, _n), obj in in_order
            if api == route.api
            and plural == route.plural
            and (route.namespace in (None, ns))
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        kind = self.kinds.get((route.api, route.plural), "")
        return {
            "kind": f"{kind}List" if kind else "List",
            "apiVersion": route.api.split("/", 1)[1],
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    def _create(self, route: Route, body: Any) -> dict:
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            raise KubeError(422, "metadata.name: Required value: name is required")
        name = body["metadata"]["name"]
        key = (route.api, route.namespace, route.plural, name)
        if key in self.objects:
            raise KubeError(
                409,
                f'{route.plural} "{name}" already exists',
                "AlreadyExists",
                details={"name": name, "kind": route.plural},
            )
        obj = _normalise(copy.deepcopy(body))
        meta = obj["metadata"]
        if route.namespace is not None:
            meta["namespace"] = route.namespace
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_version(),
            generation=1,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        meta.pop("deletionTimestamp", None)
        if body.get("kind"):
            self.kinds[(route.api, route.plural)] = body["kind"]
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _replace(self, route: Route, current: dict, body: Any) -> dict:
        if not isinstance(body, dict):
            raise KubeError(400, "the body of a PUT must be an object")
        given = body.get("metadata", {}).get("resourceVersion")
        if given and given != current["metadata"]["resourceVersion"]:
            raise KubeError(
                409,
                f'Operation cannot be fulfilled on {route.plural} "{route.name}": the object has '
                f"been modified; please apply your changes to the latest version and try again",
                "Conflict",
                details={"name": route.name, "kind": route.plural},
            )
        if route.subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(body.get("status"))
            return new
        new = _normalise(copy.deepcopy(body))
        if route.subresource is None and "status" in current:
            new["status"] = copy.deepcopy(current["status"])  # a PUT of the object does not change status
        return new

    def _patch(self, route: Route, current: dict, body: Any, content_type: str) -> dict:
        if "json-patch" in content_type:
            patched = json_patch(current, body)
        elif "merge-patch" in content_type:
            patched = merge_patch(current, body)
        else:
            raise KubeError(415, f"the stand-in does not support PATCH with {content_type!r}")
        if route.subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = patched.get("status")
            return new
        return _normalise(patched)

    def _store(self, key: Key, current: dict, new: dict) -> dict:
        meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "namespace", "name"):
            if fixed in current["metadata"]:
                meta[fixed] = current["metadata"][fixed]
        spec_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in current.items() if k not in ("metadata", "status")
        }
        meta["generation"] = current["metadata"].get("generation", 1) + (1 if spec_changed else 0)
        meta["resourceVersion"] = self._next_version()
        self.objects[key] = new
        return copy.deepcopy(new)


def _normalise(obj: dict) -> dict:
    """What the API server does on every write that tests may rely on: Secret stringData -> base64 data."""
    obj.setdefault("metadata", {})
    if obj.get("kind") == "Secret" and obj.get("stringData"):
        data = dict(obj.get("data") or {})
        for name, value in obj.pop("stringData").items():
            data[name] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    return obj


def _handler(api: KubeApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                code, answer = 400, KubeError(400, "the body is not JSON").status()
            else:
                code, answer = api.handle(
                    self.command,
                    self.path,
                    body,
                    self.headers.get("Content-Type", ""),
                    self.headers.get("Authorization", ""),
                )
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *_args) -> None:  # requests are recorded, not printed (bodies may hold secrets)
            pass

    return Handler
