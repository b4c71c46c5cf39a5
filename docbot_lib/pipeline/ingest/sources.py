"""Where the documents come from: a folder (symlinks only inside it), a file, s3://bucket/prefix/, or an https URL
(size cap, timeout, at most MAX_REDIRECTS redirects). `discover()` returns one SourceItem per document, whose
bytes are read only when the run needs them.

Layer: pipeline, step `ingest` (its sources): imports core, clients, k8s and the steps before it.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.core.errors import BadInput, NotFound
from docbot_lib.core.settings import Settings

SUPPORTED = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".adoc": "text",
}


class BadDocument(Exception):
    """A document that cannot be ingested; the message is the reason shown in the report."""


# -- sources ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceItem:
    """One document to ingest: where it is and how it is named in the index."""

    source: str  # as shown to users: path relative to the ingested folder, or the URL / S3 key
    root: str  # what was ingested: a folder, an s3://bucket/prefix, or "" for URLs and single files
    fetch: Callable[[], bytes] = field(compare=False, repr=False)
    size: int | None = None


def _object_reader(client, bucket: str, key: str) -> Callable[[], bytes]:
    """Reads the object's bytes when the run needs them (not at listing)."""

    def read() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read


def _s3_items(settings: Settings, uri: str, pattern: str | None) -> list[SourceItem]:
    from docbot_lib.clients.s3 import s3_client

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = s3_client(settings)
    items = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or (pattern and not fnmatch.fnmatch(key[len(prefix) :], pattern)):
                continue
            items.append(
                SourceItem(
                    key,
                    f"s3://{bucket}/{prefix}",
                    _object_reader(client, bucket, key),
                    obj["Size"],
                )
            )
    return items


MAX_REDIRECTS = 5  # a moved page redirects once or twice; more is a loop


def too_large(settings: Settings, size: int | None = None) -> str:
    """The reason for a document over the size cap (files, S3 objects and URLs alike)."""
    found = f"{size / (1 << 20):.1f} MB > " if size is not None else "over "
    return f"too large ({found}{settings.max_document_mb:g} MB; raise DOCBOT_MAX_DOCUMENT_MB)"


def _url_item(settings: Settings, url: str) -> SourceItem:
    """A web page, fetched within the size cap and DOCBOT_URL_TIMEOUT, following at most MAX_REDIRECTS
    redirects and only to http(s): a page can neither fill the memory nor hold the run up."""
    import httpx

    limit = int(settings.max_document_mb * (1 << 20))
    timeout = settings.url_timeout

    def fetch() -> bytes:
        deadline = time.monotonic() + timeout  # httpx's timeout is per read: a slow trickle never trips it
        try:
            with (
                httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=timeout) as client,
                client.stream("GET", url) as response,
            ):
                response.raise_for_status()
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise BadDocument(f"cannot fetch {url}: {too_large(settings, int(declared))}")
                body = bytearray()
                for part in response.iter_bytes():
                    body += part
                    if len(body) > limit:
                        raise BadDocument(f"cannot fetch {url}: {too_large(settings)}")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the whole answer took too long")
                return bytes(body)
        except httpx.TooManyRedirects:
            raise BadDocument(f"cannot fetch {url}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.UnsupportedProtocol as exc:
            raise BadDocument(f"cannot fetch {url}: a redirect leads to a URL that is not http(s) ({exc})") from None
        except httpx.TimeoutException as exc:
            raise BadDocument(
                f"cannot fetch {url}: no complete answer within {timeout:g} s "
                f"({str(exc) or 'timed out'}; raise DOCBOT_URL_TIMEOUT)"
            ) from None
        except httpx.HTTPError as exc:
            raise BadDocument(f"cannot fetch {url}: {exc}") from None

    return SourceItem(url, "", fetch)


def _refused(reason: str) -> Callable[[], bytes]:
    """A fetch that reports why a listed document is not read (the report shows it as skipped)."""

    def fetch() -> bytes:
        raise BadDocument(reason)

    return fetch


def _link_problem(path: Path, root: Path) -> str | None:
    """Why a path found in the folder must not be read, or None: it leads outside the folder (a symlink
    to a file elsewhere, e.g. a key, must not end up in the index), it is a symlink loop, or it is broken."""
    loop = "a symlink loop (the link leads back to itself): fix or remove the link"
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop so; later versions raise OSError(ELOOP)
        return loop
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return loop
        if path.is_symlink():
            return f"a broken symlink (to {os.readlink(path)}: {exc.strerror}): fix or remove the link"
        return None  # not a link: reading it reports its own problem
    if not target.is_relative_to(root):
        return (
            f"a symlink to {target}, outside the folder being ingested: not followed (ingest that file "
            f"or folder itself if it belongs in the index)"
        )
    return None


def _folder_items(root: Path, pattern: str | None) -> list[SourceItem]:
    """The files under a folder (hidden ones left out). Symlinks are read only where they stay inside the
    folder; one leading outside, a loop or a broken link is listed with the reason it is not read."""
    items = []
    for path in sorted(root.glob(pattern or "**/*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        problem = _link_problem(path, root)
        if problem:
            items.append(SourceItem(str(relative), str(root), _refused(problem)))
        elif path.is_file():
            items.append(SourceItem(str(relative), str(root), path.read_bytes, path.stat().st_size))
    return items


def discover(settings: Settings, inputs: Iterable[str], pattern: str | None = None) -> list[SourceItem]:
    """Every document named by the inputs: folders (recursively, or matching `pattern`), files,
    s3://bucket/prefix URIs and http(s) URLs. The same document named twice is listed once."""
    items: dict[tuple[str, str], SourceItem] = {}
    for raw in inputs:
        text = str(raw)
        if text.startswith("s3://"):
            found = _s3_items(settings, text, pattern)
        elif text.startswith(("http://", "https://")):
            found = [_url_item(settings, text)]
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            raise BadInput(
                f"{text}: unsupported URL scheme", "give an http(s):// URL, an s3://bucket/prefix, a folder or a file"
            )
        else:
            path = Path(text).expanduser()
            if path.is_dir():
                found = _folder_items(path.resolve(), pattern)
            elif path.is_file():
                p = path.resolve()
                found = [SourceItem(p.name, str(p.parent), p.read_bytes, p.stat().st_size)]
            else:
                raise NotFound(
                    f"{text}: no such file or folder", "give a folder, a file, an s3://bucket/prefix or an http(s) URL"
                )
        for item in found:
            items.setdefault((item.root, item.source), item)
    return list(items.values())
