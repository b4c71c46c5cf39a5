"""Chunk a loaded document by its structure, sized in the embedding model's own tokens: sections whole when they
fit, split at paragraphs and sentences when not, each chunk headed by its title and heading path.

Layer: pipeline, step `ingest` (its chunker): imports core, clients and ingest.loaders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from docbot_lib.pipeline.ingest.loaders import LoadedDoc, Section


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
