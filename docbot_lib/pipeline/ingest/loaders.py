"""Read a document: PDF, HTML (main content only: navigation, headers and footers dropped), Markdown and text,
each into a title and its sections (heading path + text). A document that cannot be read raises BadDocument
with its one-line reason.

Layer: pipeline, step `ingest` (its loaders): imports core and ingest.sources.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from docbot_lib.pipeline.ingest.sources import SUPPORTED, BadDocument, SourceItem


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


def _attribute(tag, name: str) -> str:
    """A tag's attribute as one string ("" when absent; a multi-valued one, such as class, joined by spaces)."""
    from bs4 import Tag

    value = tag.get(name) if isinstance(tag, Tag) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(value)


def _classes(tag) -> list[str]:
    return _attribute(tag, "class").split()


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
    target = re.search(r"url\s*=\s*['\"]?([^'\";]+)", _attribute(refresh, "content"), re.I) if refresh else None
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
        if tag.find("h1") and "header" in [tag.name, _attribute(tag, "id").lower(), *_classes(tag)]:
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
    if meta and _attribute(meta, "content").strip():
        notes.append(_META + _attribute(meta, "content").strip())
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
