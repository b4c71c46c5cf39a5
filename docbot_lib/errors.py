"""The one error type Doc Bot raises on purpose: it names the problem and the fix."""
from __future__ import annotations


class DocbotError(Exception):
    """A problem a user can act on. `str()` reads "<problem>. Fix: <fix>"."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" if fix else problem)


class ServiceUnavailable(DocbotError):
    """A service (S3, LLM, Milvus, ...) does not answer, or refuses our credentials."""
