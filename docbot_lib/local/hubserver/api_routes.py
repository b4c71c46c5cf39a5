"""The hub's metadata routes: a repo's info (`GET /api/models/{repo}[/revision/{rev}]`, siblings with their blob
ids and LFS sha256 on `?blobs=true`) and its tree (`GET /api/models/{repo}/tree/{rev}[/{path}]`, paged with a
`Link` header).

Layer: local (the hub stand-in's API routes): imports local.hubserver.repo and local.hubserver.base.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote

from docbot_lib.local.hubserver.base import HandlerBase
from docbot_lib.local.hubserver.repo import ServedRepo


class ApiRoutes(HandlerBase):
    """/api/models/...: what `huggingface_hub` asks before it downloads (repo info, file listing)."""

    def _api(self, rest: str, query: dict, head: bool) -> None:
        repo, tail = self._repo_from(unquote(rest))
        if repo is None:
            return self._error(404, "RepoNotFound", f"Repository {rest!r} not found", head)
        if tail in ("", "/"):
            return self._info(repo, "main", query, head)
        if tail.startswith("/revision/"):
            return self._info(repo, tail[len("/revision/") :], query, head)
        if tail.startswith("/tree/"):
            revision, _, sub = tail[len("/tree/") :].partition("/")
            return self._tree(repo, revision, sub.strip("/"), query, head)
        return self._error(404, None, f"no route for {self.path}", head)

    def _info(self, repo: ServedRepo, revision: str, query: dict, head: bool) -> None:
        if not repo.resolves(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for f in repo.files.values():
            sibling: dict = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.sha256:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(sibling)
        self._send_json(
            {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
                "private": False,
                "disabled": False,
                "gated": "manual" if self.hub.token else False,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(f.size for f in repo.files.values()),
            },
            head=head,
        )

    def _tree(self, repo: ServedRepo, revision: str, sub: str, query: dict, head: bool) -> None:
        if not repo.resolves(revision):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = sub + "/" if sub else ""
        entries: list[dict] = []
        folders: set[str] = set()
        for f in repo.files.values():
            if not f.path.startswith(prefix):
                continue
            inner = f.path[len(prefix) :]
            if recursive or "/" not in inner:
                entries.append(f.tree_entry())
            if "/" in inner:
                parts = inner.split("/")[:-1]
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    folders.add(prefix + "/".join(parts[:depth]))
        if sub and not entries and not folders:
            return self._error(404, "EntryNotFound", f"{sub} does not exist on {revision}", head)
        for folder in sorted(folders):
            oid = hashlib.sha1(f"{repo.sha}:{folder}".encode()).hexdigest()
            entries.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.hub.tree_page_size]
        extra = {}
        if start + self.hub.tree_page_size < len(entries):
            host = self.headers.get("Host", "127.0.0.1")
            nxt = (
                f"http://{host}/api/models/{repo.repo_id}/tree/{quote(revision, safe='')}"
                f"{'/' + quote(sub) if sub else ''}?recursive={str(recursive).lower()}"
                f"&cursor={start + self.hub.tree_page_size}"
            )
            extra["Link"] = f'<{nxt}>; rel="next"'
        self._send_json(page, extra=extra, head=head)
