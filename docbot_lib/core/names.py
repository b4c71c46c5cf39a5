"""One learner, one set of names: everything a learner creates is named after one setting, `user`.

Layer: core (the bottom, next to settings): imports only core.

A class shares one cluster: one Milvus, often one model. Two learners with different `user` values never see,
overwrite or break each other's data, because every name below differs:

  Milvus       database docbot_<user>; roles docbot_<user>_reader / _writer; users docbot_<user>_app / _ingest
  S3           the prefix <user>/ in the bucket
  Kubernetes   the learner's namespace (project) is <user> when the administrator provisions it

Without a user (one person on a laptop, or a cluster used by one team) the names are the plain ones:
database "default", roles docbot_reader / docbot_writer, users docbot_app / docbot_ingest, no S3 prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docbot_lib.core.errors import BadInput

# An RFC 1123 label, what Kubernetes takes as the name of a namespace, Service, Secret, Deployment and most other
# objects (at most 63 characters; each caller checks the length its own suffixes leave).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")  # .match: from the start; \Z: no trailing newline
USER_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?\Z")  # a DNS label: it also names a namespace; .match
DEFAULT_DATABASE = "default"


def check_user(user: str) -> str:
    """`user` if it can name a namespace, a Milvus database and an S3 prefix; a clear error otherwise."""
    if not USER_PATTERN.match(user):
        raise BadInput(
            f"user {user!r} cannot name a learner's objects",
            "use 1-32 lowercase letters, digits and '-', starting with a letter (e.g. user7)",
        )
    return user


@dataclass(frozen=True)
class LabNames:
    """The names of one learner's objects (or the plain ones, with user=None)."""

    user: str | None = None

    def __post_init__(self) -> None:
        if self.user is not None:
            check_user(self.user)

    @property
    def _prefix(self) -> str:
        return f"docbot_{self.user.replace('-', '_')}" if self.user else "docbot"

    @property
    def database(self) -> str:
        return self._prefix if self.user else DEFAULT_DATABASE

    @property
    def reader_role(self) -> str:
        return f"{self._prefix}_reader"

    @property
    def writer_role(self) -> str:
        return f"{self._prefix}_writer"

    @property
    def app_user(self) -> str:
        return f"{self._prefix}_app"

    @property
    def ingest_user(self) -> str:
        return f"{self._prefix}_ingest"

    @property
    def s3_prefix(self) -> str:
        return f"{self.user}/" if self.user else ""


def expand_users(spec: str) -> list[str]:
    """ "user1..user30" → user1, user2, ... user30; "ann,bob" → ann, bob (both forms may be mixed)."""
    users: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        found = re.fullmatch(r"([a-z][a-z0-9-]*?)(\d+)\.\.\1(\d+)", part)
        if found:
            stem, first, last = found[1], int(found[2]), int(found[3])
            if last < first:
                raise BadInput(f"the range {part!r} runs backwards", f"write it as {stem}{last}..{stem}{first}")
            users += [f"{stem}{n}" for n in range(first, last + 1)]
        elif ".." in part:
            raise BadInput(f"cannot read the range {part!r}", "write a range as user1..user30 (same stem)")
        else:
            users.append(part)
    for user in users:
        check_user(user)
    if len(set(users)) != len(users):
        raise BadInput("a user is named twice", "name each learner once")
    return users
