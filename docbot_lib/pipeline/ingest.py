"""Feed the bot: find documents, load them (PDF, HTML, Markdown, text), chunk them by structure and size
in the embedding model's own tokens, embed them, and write them to Milvus — incrementally.

    report = ingest(settings, ["docs/"])         # or "s3://bucket/prefix/", "https://...", a file
    print(report)

A re-run skips unchanged documents (by content hash, before parsing), replaces the chunks of changed
ones and removes those of deleted ones, without dropping the collection; the record of what was
ingested lives in Milvus next to the chunks (see docbot_lib.pipeline.vectordb). A bad document is skipped with
its reason in the report and leaves no rows behind; a changed document whose new version cannot be
loaded, embedded or written keeps its previous version. Symlinks are followed only inside the folder;
URLs are fetched within the size cap and a timeout.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from docbot_lib.core.errors import DocbotError
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


def _s3_items(settings: Settings, uri: str, pattern: str | None) -> list[SourceItem]:
    from docbot_lib.pipeline.s3 import s3_client

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
                    lambda key=key: client.get_object(Bucket=bucket, Key=key)["Body"].read(),
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
            raise DocbotError(
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
                raise DocbotError(
                    f"{text}: no such file or folder", "give a folder, a file, an s3://bucket/prefix or an http(s) URL"
                )
        for item in found:
            items.setdefault((item.root, item.source), item)
    return list(items.values())


# -- loaders ------------------------------------------------------------------------------------
@dataclass
class Section:
    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass
class LoadedDoc:
    source: str
    root: str
    title: str
    kind: str
    sections: list[Section]
    doc_hash: str
    notes: list[str] = field(default_factory=list)
    description: str = ""  # what the page is about, in one line: goes into every chunk's header


def describe(title: str, sections: list[Section], meta: str = "") -> str:
    """One line on what a document is about: its meta description, else the first sentence of its first
    section when that is short (a man page's NAME line, an introduction's opening), else nothing."""
    text = meta.strip() or (sections[0].text.strip() if sections else "")
    paragraph = " ".join(re.split(r"\n\s*\n", text, maxsplit=1)[0].split())
    first = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0].strip()
    words = first.split()
    if not words or first == title:
        return ""
    return " ".join(words[:24]) + ("…" if len(words) > 24 else "")


def kind_of(source: str, data: bytes) -> str:
    suffix = Path(source.split("?")[0]).suffix.lower()
    if suffix in SUPPORTED:
        return SUPPORTED[suffix]
    if source.startswith(("http://", "https://")):
        head = data[:1024].lstrip().lower()
        if head.startswith(b"%pdf"):
            return "pdf"
        if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
            return "html"
        return "text"
    raise BadDocument(f"unsupported type {suffix or '(no extension)'}: supported are {', '.join(sorted(SUPPORTED))}")


# UTF-32 first: its little-endian mark begins with UTF-16's
_BYTE_ORDER_MARKS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
# Characters no text file holds: C0/C1 controls other than whitespace, and U+FFFD (an undecodable byte)
_NOT_TEXT = re.compile(r"[\x01-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


def decode_text(data: bytes, notes: list[str]) -> str:
    """The text of a text-like file (see _decode). Binary content raises BadDocument: a NUL byte anywhere,
    or more than 1 % of characters that no text holds (a binary file without NULs, under a text name)."""
    text = _decode(data, notes)
    odd = sum(1 for _ in _NOT_TEXT.finditer(text))
    if odd > len(text) / 100:
        raise BadDocument(
            f"binary content in a text file ({odd} of {len(text)} characters are control "
            f"characters or undecodable bytes): not a text document"
        )
    return text


def _decode(data: bytes, notes: list[str]) -> str:
    """UTF-8 (with or without a mark) and UTF-16/32 with a byte order mark decode as they are; other bytes
    are read as Windows-1252 (what a non-UTF-8 page from an editor usually is) with a note, else with the
    undecodable bytes replaced (with a note)."""
    for mark, codec in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise BadDocument(
                    f"invalid {codec.upper()} at byte {exc.start} (the file starts with a "
                    f"{codec.upper()} byte order mark): save it as UTF-8"
                ) from None
    nul = data.find(b"\x00")
    if nul >= 0:  # anywhere: a file that starts as text can still be binary further on
        raise BadDocument(f"binary content in a text file (a NUL byte at offset {nul}): not a text document")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            text, how = data.decode("cp1252"), "read as Windows-1252"
        except UnicodeDecodeError:
            text, how = data.decode("utf-8", errors="replace"), "undecodable bytes replaced"
        notes.append(f"invalid UTF-8 at byte {exc.start}: {how} (save it as UTF-8 to be sure)")
        return text


_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")


def tidy(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


# Parts of a page that repeat on every page and say nothing about it.
BOILERPLATE_TAGS = [
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "button",
    "template",
]
BOILERPLATE_IDS = re.compile(
    r"^(header|footer|nav|navbar|navigation|toc|sidebar|menu|breadcrumbs?|"
    r"footer-text|cookie.*|skip.*)$",
    re.I,
)
BOILERPLATE_ROLES = re.compile(r"^(navigation|banner|contentinfo|search)$", re.I)
PERMALINKS = re.compile(r"^(headerlink|anchor|anchorjs-link|permalink|hash-link)$", re.I)
BLOCK_TAGS = [
    "p",
    "div",
    "pre",
    "li",
    "dt",
    "dd",
    "tr",
    "table",
    "ul",
    "ol",
    "dl",
    "blockquote",
    "section",
    "article",
    "br",
    "hr",
    "td",
    "th",
    "figure",
    "figcaption",
]
HEADING = "\x00H"
_META = "\x00meta:"  # a loader passes a document's meta description back through its notes


def load_html(data: bytes, notes: list[str]) -> tuple[str, list[Section]]:
    """Main content only, split at headings; the title from <title> (or the first <h1>)."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML pages parse fine as HTML
        soup = BeautifulSoup(decode_text(data, notes), "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    meta = soup.find("meta", attrs={"name": "description"})
    refresh = soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)})
    target = re.search(r"url\s*=\s*['\"]?([^'\";]+)", refresh.get("content", ""), re.I) if refresh else None
    if target:  # a stub that sends the browser elsewhere (Texinfo writes one per node): its text is elsewhere
        raise BadDocument(f"a redirect to {target.group(1).strip()}: nothing of its own to ingest")
    for tag in (
        soup(BOILERPLATE_TAGS)
        + soup.find_all(id=BOILERPLATE_IDS)
        + soup.find_all(class_=BOILERPLATE_IDS)  # by class too: Asciidoc's .toc, Texinfo's nav .header
        + soup.find_all(role=BOILERPLATE_ROLES)  # ARIA landmarks: Sphinx's sidebar and related links
        + soup.find_all("a", class_=PERMALINKS)
    ):  # the ¶ after each heading
        if tag.decomposed or tag.name in ("html", "body", "main", "article"):
            continue
        # a page header holding the page's own <h1> is content (Asciidoc's #header: the title and a man
        # page's NAME line, what the page is about); site headers, menus and footers are not
        if tag.find("h1") and "header" in [tag.name, tag.get("id", "").lower(), *tag.get("class", [])]:
            continue
        tag.decompose()
    main = (
        soup.find("main")
        or soup.find(role="main")
        or soup.find("article")
        or soup.find(id="content")
        or soup.body
        or soup
    )
    heading = soup.find("h1")
    name = " ".join(heading.get_text(" ", strip=True).split()) if heading else ""
    if name and name != title and name in title:
        title = name  # "json — JSON encoder and decoder", not "... — Python 3.11 documentation" on every chunk
    if heading and main is not soup and heading not in main.descendants:
        # the page's title block sits before its content (Asciidoc's #header): it says what the page is
        main.insert(0, heading.find_parent(id=re.compile("^header$", re.I)) or heading.find_parent("header") or heading)
    for tag in main.find_all(re.compile(r"^h[1-6]$")):
        level = int(tag.name[1])
        tag.replace_with(f"\n{HEADING}{level}\x00{tag.get_text(' ', strip=True)}\n")
    text = _block_text(main)
    if not title:
        first_h1 = re.search(HEADING + r"1\x00([^\n]*)", text)
        title = first_h1.group(1) if first_h1 else ""
    if meta and meta.get("content", "").strip():
        notes.append(_META + meta["content"].strip())
    return title, _split_marked(text)


def _block_text(root) -> str:
    """root.get_text(), with a line break before and after each block element (BLOCK_TAGS). A loop over
    the tree, not bs4's insert_before/insert_after of "\\n" nodes: those walk the subtree or the parents
    at each insert, quadratic in the nesting depth (20,000 nested <div>s took 52 s)."""
    from bs4 import CData, NavigableString

    blocks = set(BLOCK_TAGS)
    parts: list[str] = []
    stack: list = [(child, False) for child in reversed(root.contents)]
    while stack:
        node, closing = stack.pop()
        if closing:
            parts.append("\n")
        elif isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData):  # what get_text() keeps: no comments, doctypes, ...
                parts.append(str(node))
        else:
            if node.name in blocks:
                parts.append("\n")
                stack.append((node, True))
            stack += [(child, False) for child in reversed(node.contents)]
    return "".join(parts)


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def load_markdown(data: bytes, notes: list[str]) -> tuple[str, list[Section]]:
    """ATX headings (outside code fences) become section boundaries; the first # heading is the title."""
    out, fenced, title = [], False, ""
    for line in decode_text(data, notes).split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else _MD_HEADING.match(line)
        if match:
            level, text = len(match.group(1)), match.group(2)
            title = title or (text if level == 1 else "")
            out.append(f"{HEADING}{level}\x00{text}")
        else:
            out.append(line)
    return title, _split_marked("\n".join(out))


def _split_marked(text: str) -> list[Section]:
    """Sections from text where headings are marked HEADING<level>\\0<heading>."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, heading) of the headings above
    buffer: list[str] = []

    def close():
        body = tidy("\n".join(buffer))
        if body:
            sections.append(Section(body, tuple(h for _, h in path)))
        buffer.clear()

    for line in text.split("\n"):
        if line.startswith(HEADING):
            close()
            level, heading = int(line[2]), line[4:].strip()
            path = [(lvl, h) for lvl, h in path if lvl < level] + ([(level, heading)] if heading else [])
        else:
            buffer.append(line)
    close()
    return sections


def load_text(data: bytes, notes: list[str]) -> tuple[str, list[Section]]:
    text = tidy(decode_text(data, notes))
    return "", [Section(text)] if text else []


def load_pdf(data: bytes, notes: list[str]) -> tuple[str, list[Section]]:
    """Text per page, page numbers kept (1-based); the title from the PDF's metadata."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = tidy(page.extract_text() or "")
            if text:
                sections.append(Section(text, (), number))
    except FileNotDecryptedError:
        raise BadDocument(
            "encrypted PDF (it needs a password to open): ingest an unencrypted copy, "
            "e.g. `qpdf --decrypt --password=... in.pdf out.pdf`"
        ) from None
    # whatever a broken file makes the parser raise (PdfReadError, LimitReachedError, RecursionError,
    # a KeyError deep in a malformed object, ...) says the same thing: this PDF cannot be read
    except Exception as exc:  # noqa: BLE001
        raise BadDocument(f"corrupt PDF: {type(exc).__name__}: {exc}") from None
    if not sections and reader.pages:
        notes.append("no text layer (a scanned PDF needs OCR first)")
    return str(title), sections


LOADERS = {"html": load_html, "markdown": load_markdown, "text": load_text, "pdf": load_pdf}


def load(item: SourceItem, data: bytes, doc_hash: str) -> LoadedDoc:
    """Parse one document; raise BadDocument with the reason when it cannot be used."""
    if not data.strip():
        raise BadDocument("empty file")
    kind = kind_of(item.source, data)
    notes: list[str] = []
    title, sections = LOADERS[kind](data, notes)
    if not sections:
        raise BadDocument("no text found" + (f" ({notes[-1]})" if notes else ""))
    title = title.strip() or Path(item.source.split("?")[0]).stem.replace("-", " ").replace("_", " ")
    meta = notes.pop() if notes and notes[-1].startswith(_META) else ""
    return LoadedDoc(
        item.source,
        item.root,
        title,
        kind,
        sections,
        doc_hash,
        notes,
        describe(title, sections, meta.removeprefix(_META)),
    )


# -- chunking -------------------------------------------------------------------------------------
@dataclass
class Chunk:
    pk: str
    text: str  # what is embedded, searched and shown to the LLM: "title › section" header + body
    source: str
    root: str
    title: str
    section: str
    page: int
    chunk_index: int
    doc_hash: str


def chunk_key(doc: LoadedDoc, text: str) -> str:
    """Stable primary key from the document's identity and version and the chunk's content: each version
    has keys of its own, so a new version is written next to the previous one before that is removed."""
    return hashlib.sha256(f"{doc.root}\x00{doc.source}\x00{doc.doc_hash}\x00{text}".encode()).hexdigest()[:32]


def chunk_document(
    doc: LoadedDoc, count_tokens: Callable[[str], int], chunk_tokens: int, max_tokens: int
) -> list[Chunk]:
    """Split a document into chunks of at most `chunk_tokens` (header included, never above the model's
    `max_tokens`): sections first, small neighbouring sections packed together, large ones split at
    paragraphs, lines, sentences, then words. Every chunk starts with its "title › section" header."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # the splitter and the packer ask for the same strings' lengths again and again
    count = lru_cache(maxsize=None)(count_tokens)
    budget = min(chunk_tokens, max_tokens)
    title = f"{doc.title} — {doc.description}" if doc.description else doc.title
    pieces: list[tuple[Section, str]] = []  # (section, body) each within budget once its header is added
    for section in doc.sections:
        header = _header(title, section.headings)
        room = max(budget - count(header) - 1, 16)
        if count(section.text) <= room:
            pieces.append((section, section.text))
            continue
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=room,
            chunk_overlap=0,
            length_function=count,
            separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
            keep_separator="end",
        )
        pieces += [(section, part.strip()) for part in splitter.split_text(section.text) if part.strip()]

    chunks: list[Chunk] = []
    current: list[tuple[Section, str]] = []

    def emit():
        first = current[0][0]
        body = current[0][1] + "".join(f"\n\n{_subheading(first, section)}{part}" for section, part in current[1:])
        text = _header(title, first.headings) + "\n" + body
        chunks.append(
            Chunk(
                chunk_key(doc, text),
                text,
                doc.source,
                doc.root,
                doc.title,
                " › ".join(_below_title(doc.title, first.headings)),
                first.page or 0,
                len(chunks),
                doc.doc_hash,
            )
        )
        current.clear()

    used = 0  # tokens of the chunk being packed; WordPiece counts add up across whitespace
    for section, part in pieces:
        if current:
            addition = count(_subheading(current[0][0], section)) + count(part) + 1
            if current[0][0].page == section.page and used + addition <= budget:
                current.append((section, part))
                used += addition
                continue
            emit()
        current.append((section, part))
        used = count(_header(title, section.headings)) + 1 + count(part)
    if current:
        emit()
    fits = [c for c in chunks if count(c.text) <= max_tokens]  # the guarantee, checked exactly
    if len(fits) == len(chunks):
        return chunks
    result = fits + _force_split([c for c in chunks if c not in fits], count, max_tokens, doc)
    for index, chunk in enumerate(result):
        chunk.chunk_index = index
    return result


def _subheading(first: Section, section: Section) -> str:
    """The heading line of a section packed after `first`: its headings below first's, if any."""
    if section.headings == first.headings:
        return ""
    sub = (
        section.headings[len(first.headings) :]
        if section.headings[: len(first.headings)] == first.headings
        else section.headings
    )
    return " › ".join(sub) + "\n" if sub else ""


def _header(title: str, headings: tuple[str, ...]) -> str:
    """ "title — description › section › subsection" (a heading repeating the title is left out)."""
    return " › ".join([title, *_below_title(title.split(" — ", 1)[0], headings)])


def _below_title(name: str, headings: tuple[str, ...]) -> list[str]:
    """The section path without the headings that repeat the page's title: the title itself, and a top
    heading that only extends it ("git-reset(1) Manual Page" on the page "git-reset(1)")."""
    return [h for i, h in enumerate(headings) if h != name and not (i == 0 and h.startswith(name + " "))]


def _force_split(chunks: list[Chunk], count_tokens, max_tokens: int, doc: LoadedDoc) -> list[Chunk]:
    """Last resort for text the splitter could not bring under the limit (an enormous header or 'word'):
    halve it, at a space where there is one, until every part fits."""
    out = []
    for chunk in chunks:
        header, _, body = chunk.text.partition("\n")
        if count_tokens(header) > max_tokens // 2:
            header = header[:120]
        queue = [body]
        while queue:
            piece = queue.pop(0)
            if count_tokens(f"{header}\n{piece}") <= max_tokens or len(piece) <= 1:
                text = f"{header}\n{piece}"
                out.append(
                    Chunk(
                        chunk_key(doc, text),
                        text,
                        chunk.source,
                        chunk.root,
                        chunk.title,
                        chunk.section,
                        chunk.page,
                        0,
                        chunk.doc_hash,
                    )
                )
                continue
            middle = len(piece) // 2
            space = piece.rfind(" ", 0, middle)
            cut = space if space > 0 else middle
            queue[:0] = [piece[:cut].strip() or piece[:cut], piece[cut:].strip() or piece[cut:]]
    return out


def preview(settings: Settings, path: str | Path, limit: int = 3) -> list[Chunk]:
    """The first chunks one document would give (nothing is written): to see what the loader and
    chunker make of a page."""
    from docbot_lib.clients.embeddings import get_embeddings

    (item,) = discover(settings, [str(path)])
    data = item.fetch()
    embedder = get_embeddings(settings)
    doc = load(item, data, hashlib.sha256(data).hexdigest())
    return chunk_document(doc, embedder.count_tokens, settings.chunk_tokens, embedder.max_tokens)[:limit]


# -- the report -----------------------------------------------------------------------------------
@dataclass
class IngestReport:
    collection: str
    documents: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (source, note): ingested, with a remark
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    retrieval: str = ""
    wall_seconds: float = 0.0
    SHOWN = 20  # skipped documents and notes printed (all are in the lists)

    @property
    def total_seconds(self) -> float:
        """Wall time of the run (the stages, plus what is between them)."""
        return self.wall_seconds or sum(self.seconds.values())

    def __str__(self) -> str:
        lines = [
            f"collection {self.collection!r} ({self.retrieval})",
            f"documents: {self.documents} seen, {self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.deleted} deleted, {len(self.skipped)} skipped",
            f"chunks: {self.chunks_written} written, {self.chunks_deleted} removed",
            "time: "
            + ", ".join(f"{stage} {sec:.1f} s" for stage, sec in self.seconds.items())
            + f" (wall time {self.total_seconds:.1f} s)",
        ]
        for label, items, name in (("skipped", self.skipped, "skipped"), ("note   ", self.notes, "notes")):
            lines += [f"{label} {source}: {reason}" for source, reason in items[: self.SHOWN]]
            if len(items) > self.SHOWN:
                lines.append(f"{label} ... and {len(items) - self.SHOWN} more (all of them: report.{name})")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


# -- the pipeline ---------------------------------------------------------------------------------
class _Timer:
    def __init__(self, report: IngestReport):
        self.report = report

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.report.seconds[stage] = timer.report.seconds.get(stage, 0.0) + time.perf_counter() - self.start

        return _Span()


def ingest(
    settings: Settings,
    inputs: Iterable[str],
    collection: str | None = None,
    pattern: str | None = None,
    progress: bool = True,
    batch_chunks: int = 512,
) -> IngestReport:
    """Ingest documents into the collection incrementally; return (and do not print) the report."""
    from tqdm.auto import tqdm

    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.pipeline.store import ChunkStore

    started = time.perf_counter()
    name = collection or settings.milvus_collection
    report = IngestReport(name)
    timer = _Timer(report)
    inputs = list(inputs)
    with timer("discover"):
        items = discover(settings, inputs, pattern)
    embedder = get_embeddings(settings)
    store = ChunkStore(settings, name, dimension=embedder.dimension)
    report.retrieval = store.describe()
    report.documents = len(items)
    limit = int(settings.max_document_mb * (1 << 20))

    # 1. what changed: hash the bytes (cheap), compare with the record kept next to the chunks
    with timer("hash"):
        recorded = store.documents()  # {(root, source): doc_hash}
        todo: list[tuple[SourceItem, bytes, str]] = []
        seen_hashes: dict[str, str] = {}
        for item in items:
            if item.size is not None and item.size > limit:
                _skip(report, recorded, item.root, item.source, too_large(settings, item.size))
                continue
            try:
                data = item.fetch()
            except BadDocument as exc:
                _skip(report, recorded, item.root, item.source, str(exc))
                continue
            except OSError as exc:
                _skip(report, recorded, item.root, item.source, f"cannot read: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. an S3 ClientError: this document only
                _skip(report, recorded, item.root, item.source, f"cannot fetch: {type(exc).__name__}: {exc}")
                continue
            if len(data) > limit:  # it grew since it was listed
                _skip(report, recorded, item.root, item.source, too_large(settings, len(data)))
                continue
            doc_hash = hashlib.sha256(data).hexdigest()
            if doc_hash in seen_hashes and seen_hashes[doc_hash] != item.source:
                _skip(report, recorded, item.root, item.source, f"same content as {seen_hashes[doc_hash]}")
                continue
            seen_hashes[doc_hash] = item.source
            if recorded.get((item.root, item.source)) == doc_hash:
                report.unchanged += 1
                continue
            todo.append((item, data, doc_hash))

    # 2. deleted: documents recorded under a folder/prefix ingested now that are no longer there
    with timer("delete"):
        scanned_roots = {item.root for item in items if item.root}
        present = {(item.root, item.source) for item in items}
        for key in sorted(k for k in recorded if k[0] in scanned_roots and k not in present):
            try:
                report.chunks_deleted += store.delete_document(*key)
            except Exception as exc:  # noqa: BLE001 - still recorded: the next run tries again
                report.skipped.append(
                    (
                        key[1],
                        f"deleted, but its chunks could not be removed "
                        f"({type(exc).__name__}: {exc}): the next run tries again",
                    )
                )
                continue
            report.deleted += 1

    # 3. load, chunk, embed and write, a batch of documents at a time (bounded memory; resumable). One thread:
    #    loading in a second one, next to torch's, made the whole run no faster on 2 cores (GIL contention)
    bar = tqdm(total=len(todo), desc="documents", unit="doc", disable=not progress or not todo)
    pending: list[tuple[LoadedDoc, list[Chunk]]] = []
    pending_chunks = 0
    for index, (item, data, doc_hash) in enumerate(todo):
        with timer("load+chunk"):
            try:
                doc = load(item, data, doc_hash)
                chunks = chunk_document(doc, embedder.count_tokens, settings.chunk_tokens, embedder.max_tokens)
            except Exception as exc:  # noqa: BLE001 - BadDocument says why; anything else is a parser's failure
                reason = str(exc) if isinstance(exc, BadDocument) else f"cannot be parsed ({type(exc).__name__}: {exc})"
                _skip(report, recorded, item.root, item.source, reason)
                bar.update(1)
                continue
            report.notes += [(item.source, note) for note in doc.notes]
        pending.append((doc, chunks))
        pending_chunks += len(chunks)
        if pending_chunks >= batch_chunks or index == len(todo) - 1:
            _write_batch(store, embedder, pending, recorded, report, timer)
            bar.update(len(pending))
            pending, pending_chunks = [], 0
    if pending:
        _write_batch(store, embedder, pending, recorded, report, timer)
        bar.update(len(pending))
    bar.close()
    with timer("write"):
        store.flush()
    report.wall_seconds = time.perf_counter() - started
    return report


def _skip(report: IngestReport, recorded, root: str, source: str, reason: str) -> None:
    """One reason line for a document that is not (re)written; a changed one keeps its previous version
    (its rows are removed only once the new version's rows are in)."""
    if (root, source) in recorded:
        reason += "; kept the previous version"
    report.skipped.append((source, reason))


def _write_batch(store, embedder, batch, recorded, report: IngestReport, timer: _Timer) -> None:
    with timer("embed"):
        documents = _embed(embedder, batch, recorded, report)
    with timer("write"):
        _store(store, documents, recorded, report)


def _embed(embedder, batch, recorded, report: IngestReport) -> list:
    """(doc, chunks, vectors) of each document: all in one go (fast); when that fails, one document at
    a time, so only the one that fails is skipped."""
    texts = [c.text for _doc, chunks in batch for c in chunks]
    try:
        vectors = embedder.embed_documents(texts) if texts else []
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} chunks")
    except Exception as exc:  # noqa: BLE001 - a document's failure is reported, the run goes on
        if len(batch) > 1:
            return [one for pair in batch for one in _embed(embedder, [pair], recorded, report)]
        doc = batch[0][0]
        _skip(report, recorded, doc.root, doc.source, f"could not be embedded: {type(exc).__name__}: {exc}")
        return []
    documents, offset = [], 0
    for doc, chunks in batch:
        documents.append((doc, chunks, vectors[offset : offset + len(chunks)]))
        offset += len(chunks)
    return documents


def _store(store, documents, recorded, report: IngestReport) -> None:
    """Write documents in one go; when that fails, one by one, so only the failing one is skipped (the
    store has taken its new rows out again: a changed one keeps its previous version)."""
    from docbot_lib.pipeline.store import NotRecorded

    if not documents:
        return
    try:
        written, removed = store.replace_documents(
            [(doc.root, doc.source, doc.doc_hash, chunks, vectors) for doc, chunks, vectors in documents], set(recorded)
        )
    except Exception as exc:  # noqa: BLE001 - a document's failure is reported, the run goes on
        if len(documents) > 1:
            for one in documents:
                _store(store, [one], recorded, report)
            return
        doc = documents[0][0]
        if isinstance(exc, NotRecorded):
            report.skipped.append((doc.source, str(exc)))
        else:
            _skip(report, recorded, doc.root, doc.source, f"could not be written: {type(exc).__name__}: {exc}")
        return
    report.chunks_written += written
    report.chunks_deleted += removed
    for doc, _chunks, _vectors in documents:
        if (doc.root, doc.source) in recorded:
            report.changed += 1
        else:
            report.new += 1
