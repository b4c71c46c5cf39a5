"""The errors Doc Bot raises on purpose: each names the problem and the fix.

Layer: the bottom (imports nothing of Doc Bot). Code branches on the type, never on a message's text; the CLI maps
a type to its exit status (`exit_code`), and the chatbot API answers one raised while answering with
`http_status` (the server's configuration or a service behind it: 503; the request itself: 422):

  DocbotError              something a user can act on                              exit 2, HTTP 503
  ├── ConfigError          a setting is missing or wrong                            exit 2, HTTP 503
  ├── BadInput             what the user gave is unusable (a file, a name, a value)  exit 2, HTTP 422
  ├── NotFound             what was asked for is not there                          exit 2, HTTP 503
  └── ServiceUnavailable   a service (S3, LLM, Milvus, hub, Kubernetes) failed      exit 3, HTTP 503
      ├── NotReachable     ... does not answer at all (not started, wrong address)
      ├── AuthRefused      ... answered, and refused our credentials
      └── PermissionDenied ... accepted who we are, and refused what we asked

`service` says which service ("milvus", "llm", "s3", "hub", "kubernetes"), when one is known: the API's
readiness and errors name it without reading the message.
"""

from __future__ import annotations


class DocbotError(Exception):
    """A problem a user can act on. `str()` reads "<problem>. Fix: <fix>"."""

    exit_code = 2
    http_status = 503

    def __init__(self, problem: str, fix: str = "", *, service: str | None = None):
        self.problem = problem
        self.fix = fix
        self.service = service
        super().__init__(f"{problem}. Fix: {fix}" if fix else problem)


class ConfigError(DocbotError):
    """A setting is missing or wrong (an endpoint, a name, a file the settings point at)."""


class BadInput(DocbotError):
    """What the user gave cannot be used: a document, a parameter, a name, a request."""

    http_status = 422


class NotFound(DocbotError):
    """What was asked for does not exist (a collection, a model file, a Kubernetes object)."""


class ServiceUnavailable(DocbotError):
    """A service (S3, LLM, Milvus, the hub, Kubernetes) does not answer, or refuses our credentials."""

    exit_code = 3


class NotReachable(ServiceUnavailable):
    """Nothing answers at the service's address: it is not started, or the address is wrong."""


class AuthRefused(ServiceUnavailable):
    """The service answered and refused our credentials (a wrong password or token)."""


class PermissionDenied(ServiceUnavailable):
    """The service accepted our credentials and refused the operation (a missing right or grant)."""
