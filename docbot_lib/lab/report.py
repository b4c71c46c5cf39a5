"""What `lab provision`, `teardown` and `status` return: one row per object or learner, printable as a table.

Layer: top (lab): imports any layer below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docbot_lib.k8s import manifests


@dataclass
class LabRow:
    user: str
    what: str
    state: str  # created | already there | removed | absent | a progress value


@dataclass
class LabReport:
    """What a lab command did, one row per object; printable (no secret in it)."""

    action: str
    rows: list[LabRow] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.rows)

    def __str__(self) -> str:
        width = max([len("user")] + [len(r.user) for r in self.rows])
        what = max([len("object")] + [len(r.what) for r in self.rows])
        lines = [f"{'user':<{width}}  {'object':<{what}}  state", f"{'-' * width}  {'-' * what}  -----"]
        lines += [f"{r.user:<{width}}  {r.what:<{what}}  {r.state}" for r in self.rows]
        states = sorted({r.state for r in self.rows})
        learners = len({r.user for r in self.rows})
        lines.append(
            f"{self.action}: {learners} learner(s) in {self.seconds:.1f} s; "
            + ", ".join(f"{self.count(s)} {s}" for s in states)
        )
        if self.action == "provision" and self.rows and self.count("created") == 0:
            lines.append("nothing changed: everything was already there")
        return "\n".join(lines)


def _row(user: str, applied: manifests.Applied) -> LabRow:
    return LabRow(
        user, f"{applied.kind}/{applied.name}", "already there" if applied.action == "kept" else applied.action
    )
