"""Ingestion and retrieval against the real Milvus Lite server of the local stack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from conftest import REPO

from docbot_lib.clients.embeddings import get_embeddings
from docbot_lib.pipeline.ingest.chunking import chunk_document
from docbot_lib.pipeline.ingest.loaders import load, load_html, load_markdown, load_pdf
from docbot_lib.pipeline.ingest.run import ingest
from docbot_lib.pipeline.ingest.sources import BadDocument, SourceItem, discover
from docbot_lib.pipeline.samples import prepare_sample_docs, write_pdf
from docbot_lib.pipeline.store.access import search
from docbot_lib.pipeline.store.chunks import SECTION_MAX, ChunkStore, fit, source_filter
from docbot_lib.pipeline.store.ranking import keywords_of, reciprocal_rank_fusion


@pytest.fixture
def collection() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def docs(tmp_path) -> Path:
    return prepare_sample_docs(tmp_path / "docs")


def rows(settings, collection) -> list[dict]:
    store = ChunkStore(settings, collection, create=False)
    try:
        return store._query_all(collection, 'pk != ""', ["pk", "source", "text", "page", "section", "title"])
    finally:
        store.close()


# -- loaders --------------------------------------------------------------------------------------
def test_html_keeps_main_content_title_and_headings():
    data = (REPO / "sample-docs" / "milvus-on-openshift.html").read_bytes()
    title, sections = load_html(data, [])
    text = "\n".join(s.text for s in sections)
    assert title == "Milvus on OpenShift"
    assert "embedded etcd" in text and "docbot_reader" in text
    for boilerplate in ("analytics", "Privacy", "Last updated", "Doc Bot workshop", "font-family"):
        assert boilerplate not in text
    assert ("Milvus on OpenShift", "Security", "Roles") in [s.headings for s in sections]


def test_html_page_title_block_is_kept_and_describes_every_chunk():
    """Asciidoc/man pages put the title and the NAME line (what the page is about) in #header, before
    #content: that block is content; a site header without the page's <h1>, and a table of contents, are not."""
    page = (
        b"<html><head><title>tool-undo(1)</title></head><body>"
        b"<header><a href='/'>Home</a> Site menu</header>"
        b"<div id='header'><h1>tool-undo(1) Manual Page</h1><h2>NAME</h2>"
        b"<p>tool-undo -\n  Take back the last\n  change</p></div>"
        b"<div id='toc' class='toc'>Table of Contents</div>"
        b"<div id='content'><h2>DESCRIPTION</h2><p>Moves the head back one step.</p></div></body></html>"
    )
    title, sections = load_html(page, [])
    text = "\n".join(s.text for s in sections)
    assert "Site menu" not in text and "Table of Contents" not in text
    item = SourceItem("tool-undo.html", "/x", lambda: page)
    doc = load(item, page, "h")
    assert doc.description == "tool-undo - Take back the last change"
    chunks = chunk_document(doc, lambda t: len(t.split()), 200, 250)
    assert chunks and all(c.text.startswith("tool-undo(1) — tool-undo - Take back the last change") for c in chunks)
    assert "Manual Page" not in chunks[-1].text.partition("\n")[0]
    assert "Moves the head back one step." in chunks[-1].text


def test_html_sphinx_page_keeps_its_main_role_without_landmarks_permalinks_or_site_name():
    page = (
        b"<html><head><title>json \xe2\x80\x94 JSON codec \xe2\x80\x94 Python 3.11 documentation</title></head><body>"
        b"<div class='related' role='navigation'><a>modules</a> | <a>next</a></div>"
        b"<div class='document'><div class='body' role='main'>"
        b"<h1>json \xe2\x80\x94 JSON codec<a class='headerlink' href='#x'>\xc2\xb6</a></h1><p>Encodes objects.</p>"
        b"<h2>Basic Usage<a class='headerlink' href='#y'>\xc2\xb6</a></h2><p>json.dumps(obj)</p></div></div>"
        b"<div class='sphinxsidebar' role='navigation'><h3>Table of Contents</h3><p>Previous topic</p></div>"
        b"<div role='search'><form><input name='q'></form>Quick search</div></body></html>"
    )
    title, sections = load_html(page, [])
    text = "\n".join(s.text for s in sections)
    assert title == "json \u2014 JSON codec"
    assert [s.headings for s in sections] == [("json \u2014 JSON codec",), ("json \u2014 JSON codec", "Basic Usage")]
    for boilerplate in ("modules", "Previous topic", "Quick search", "\u00b6"):
        assert boilerplate not in text and all(boilerplate not in h for s in sections for h in s.headings)


def test_markdown_sections_ignore_hashes_in_code():
    md = b"# Guide\nintro\n## Setup\n```bash\n# not a heading\npip install x\n```\n### Deep\ndetail\n"
    title, sections = load_markdown(md, [])
    assert title == "Guide"
    assert [s.headings for s in sections] == [("Guide",), ("Guide", "Setup"), ("Guide", "Setup", "Deep")]
    assert "# not a heading" in sections[1].text


def test_pdf_text_per_page_with_page_numbers(tmp_path):
    pdf = write_pdf(tmp_path / "g.pdf", "A guide", [["first page words"], ["second page words"]])
    title, sections = load_pdf(pdf.read_bytes(), [])
    assert title == "A guide"
    assert [(s.page, s.text) for s in sections] == [(1, "first page words"), (2, "second page words")]


def test_text_document_gets_a_title_from_its_name():
    item = SourceItem("notes/rag-basics.txt", "/x", lambda: b"")
    doc = load(item, b"Retrieval\n\nplain words here", "h")
    assert doc.title == "rag basics" and doc.kind == "text"


# -- chunking -------------------------------------------------------------------------------------
def test_chunks_never_exceed_the_model_limit(settings):
    embedder = get_embeddings(settings)
    long_section = " ".join(f"word{i} is followed by more text." for i in range(3000))
    giant_word = "x" * 20000
    md = f"# Big\n## Long part\n{long_section}\n## Giant\n{giant_word}\n".encode()
    doc = load(SourceItem("big.md", "/r", lambda: md), md, "h")
    chunks = chunk_document(doc, embedder.count_tokens, 200, embedder.max_tokens)
    sizes = [embedder.count_tokens(c.text) for c in chunks]
    assert max(sizes) <= embedder.max_tokens == 254
    assert sum(1 for s in sizes if s <= 200) >= len(sizes) - 2  # the budget holds except for forced splits
    assert all(c.text.startswith("Big — word0 is followed by more text. › ") for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert "word2999" in joined and joined.count("x") >= 20000  # nothing dropped
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_small_sections_are_packed_and_keep_their_headings(settings):
    embedder = get_embeddings(settings)
    md = b"# T\n## A\nalpha text\n## B\nbeta text\n"
    doc = load(SourceItem("t.md", "/r", lambda: md), md, "h")
    (chunk,) = chunk_document(doc, embedder.count_tokens, 200, embedder.max_tokens)
    assert chunk.text.startswith("T — alpha text › A\nalpha text") and "B\nbeta text" in chunk.text


def test_every_chunk_header_says_what_the_page_is_about():
    page = (
        b"<html><head><title>git-stash(1)</title></head><body><div id='content'><h2>NAME</h2>"
        b"<p>git-stash - Stash the changes in a dirty working directory away</p><h2>OPTIONS</h2>"
        b"<p>-u, --include-untracked</p></div></body></html>"
    )
    doc = load(SourceItem("git-stash.html", "/r", lambda: page), page, "h")
    assert doc.description == "git-stash - Stash the changes in a dirty working directory away"
    meta = (
        b"<html><head><title>T</title><meta name='description' content='About T.'></head><body><p>x</p></body></html>"
    )
    assert load(SourceItem("t.html", "/r", lambda: meta), meta, "h").description == "About T."


# -- ingest, incremental ---------------------------------------------------------------------------
def test_ingest_then_incremental_changes(settings, docs, collection):
    first = ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (first.documents, first.new, len(first.skipped)) == (4, 4, 0), str(first)
    before = rows(settings, collection)
    sources = {r["source"] for r in before}
    assert sources == {
        "milvus-on-openshift.html",
        "openshift-ai-model-serving.md",
        "rag-basics.txt",
        "workshop-guide.pdf",
    }
    assert {r["page"] for r in before if r["source"] == "workshop-guide.pdf"} == {1, 2}

    again = ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (again.unchanged, again.chunks_written, again.chunks_deleted) == (4, 0, 0)

    (docs / "rag-basics.txt").write_text("Retrieval\n\nA completely rewritten page about reranking.\n")
    (docs / "milvus-on-openshift.html").unlink()
    changed = ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (changed.changed, changed.deleted, changed.unchanged) == (1, 1, 2), str(changed)
    after = rows(settings, collection)
    assert "milvus-on-openshift.html" not in {r["source"] for r in after}
    rag = [r["text"] for r in after if r["source"] == "rag-basics.txt"]
    assert len(rag) == 1 and "reranking" in rag[0]
    untouched = {r["pk"] for r in before if r["source"] == "openshift-ai-model-serving.md"}
    assert untouched <= {r["pk"] for r in after}  # the collection was not rebuilt


def test_bad_inputs_are_skipped_with_reasons(settings, tmp_path, collection):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\nUseful words about KServe.\n")
    (folder / "copy.md").write_text("# Good\nUseful words about KServe.\n")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    (folder / "empty.txt").write_text("")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (folder / "latin1.txt").write_bytes("Caf\xe9 au lait and Milvus.".encode("latin-1"))
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n")
    (folder / "huge.txt").write_text("big " * 400_000)
    (folder / "moved.html").write_text(
        '<html><head><title>Moved</title><meta http-equiv="Refresh" '
        'content="0; url=good.html#part"></head><body>The node is at good</body></html>'
    )
    settings = settings.model_copy(update={"max_document_mb": 1.0})
    report = ingest(settings, [str(folder), str(folder / "good.md")], collection=collection, progress=False)
    reasons = dict(report.skipped)
    assert "corrupt PDF" in reasons["corrupt.pdf"]
    assert reasons["empty.txt"] == "empty file"
    assert "binary content" in reasons["binary.txt"]
    assert "unsupported type .png" in reasons["picture.png"]
    assert "too large" in reasons["huge.txt"] and "DOCBOT_MAX_DOCUMENT_MB" in reasons["huge.txt"]
    assert reasons["good.md"].startswith("same content as") or reasons["copy.md"].startswith("same content as")
    assert reasons["moved.html"].startswith("a redirect to good.html#part")
    assert "invalid UTF-8" in dict(report.notes)["latin1.txt"]
    assert report.new == 2  # one of good/copy, and latin1.txt
    assert {r["source"] for r in rows(settings, collection)} <= {"good.md", "copy.md", "latin1.txt"}
    assert "skipped corrupt.pdf" in str(report)


def test_a_document_that_fails_to_write_leaves_no_rows(settings, docs, collection, monkeypatch):
    """Rows are written, then recording the document fails: its rows are removed, the others stay."""
    real = ChunkStore.replace_documents

    def failing(self, documents, existing):
        if not any(source == "rag-basics.txt" for _root, source, *_ in documents):
            return real(self, documents, existing)
        upsert = self.client.upsert

        def record_fails(collection_name, data, **kw):
            if collection_name.endswith("_docs"):
                raise RuntimeError("Milvus went away")
            return upsert(collection_name, data, **kw)

        self.client.upsert = record_fails
        try:
            return real(self, documents, existing)
        finally:
            self.client.upsert = upsert

    monkeypatch.setattr(ChunkStore, "replace_documents", failing)
    report = ingest(settings, [str(docs)], collection=collection, progress=False)
    monkeypatch.undo()
    assert "could not be written" in dict(report.skipped)["rag-basics.txt"]
    assert report.new == 3
    assert "rag-basics.txt" not in {r["source"] for r in rows(settings, collection)}
    retry = ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (retry.new, retry.unchanged) == (1, 3)


def test_discover_lists_a_file_named_twice_once(docs):
    items = discover(None, [str(docs / "rag-basics.txt"), str(docs / "rag-basics.txt"), str(docs)], pattern="*.txt")
    # named as a file twice and found again in its folder: one document
    assert [(i.root, i.source) for i in items] == [(str(docs.resolve()), "rag-basics.txt")]


# -- retrieval --------------------------------------------------------------------------------------
def test_hybrid_and_dense_search_find_the_right_page(settings, docs, collection):
    ingest(settings, [str(docs)], collection=collection, progress=False)
    question = "Which role lets the chatbot search a collection?"
    hybrid = search(settings, question, k=3, collection=collection)
    assert hybrid[0].source == "milvus-on-openshift.html" and hybrid[0].section.startswith("Security")
    assert "docbot_reader" in hybrid[0].text
    assert [h.rank for h in hybrid] == [1, 2, 3]
    dense = search(settings.model_copy(update={"hybrid": False}), question, k=3, collection=collection)
    assert dense[0].source == "milvus-on-openshift.html"
    pdf_only = search(settings, question, k=3, collection=collection, filter=source_filter(["workshop-guide.pdf"]))
    assert pdf_only and {h.source for h in pdf_only} == {"workshop-guide.pdf"} and pdf_only[0].page in (1, 2)


def test_nothing_relevant_gives_no_hits(settings, docs, collection):
    ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (
        search(
            settings,
            "Recipe for a chocolate cake with strawberries",
            collection=collection,
            min_similarity=settings.min_similarity,
        )
        == []
    )
    assert search(
        settings,
        "How much GPU memory does a 7B model need?",
        collection=collection,
        min_similarity=settings.min_similarity,
    )


def test_bm25_is_not_used_on_a_server_without_it(settings, collection, monkeypatch):
    monkeypatch.setattr("docbot_lib.clients.milvus.supports_bm25", lambda client: False)
    store = ChunkStore(settings, collection, dimension=384)
    try:
        assert not store.hybrid and "no BM25" in store.describe()
        fields = {f["name"] for f in store.client.describe_collection(collection)["fields"]}
        assert "sparse" not in fields
    finally:
        store.close()


# -- the command line contract ----------------------------------------------------------------------
def test_cli_ingest_and_search_json(settings, docs, collection, capsys):
    from docbot_lib.cli import main

    assert main(["ingest", str(docs), "--collection", collection]) == 0
    assert "4 new" in capsys.readouterr().out
    assert (
        main(["search", "What does the storage initializer do?", "--collection", collection, "-k", "2", "--json"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["rank"] for line in lines] == [1, 2]
    assert {"rank", "source", "title", "score", "text"} <= set(lines[0])
    assert lines[0]["source"] == "openshift-ai-model-serving.md"


def test_cli_search_on_a_missing_collection_is_one_clear_error(settings, capsys):
    from docbot_lib.cli import main

    assert main(["search", "anything", "--collection", "never_ingested"]) == 2
    assert "docbot ingest" in capsys.readouterr().err


def test_unreachable_source_is_a_clear_error(settings):
    from docbot_lib.core.errors import DocbotError

    with pytest.raises(DocbotError, match="no such file or folder"):
        discover(settings, ["/no/such/folder"])
    item = discover(settings, ["http://127.0.0.1:9/nothing.html"])[0]
    with pytest.raises(BadDocument, match="cannot fetch"):
        item.fetch()


def test_one_document_cannot_fill_every_place():
    from docbot_lib.pipeline.store.ranking import diversify

    order = ["a1", "a2", "a3", "b1", "a4", "c1"]
    assert diversify(order, lambda pk: pk[0], 2) == ["a1", "a2", "b1", "c1", "a3", "a4"]
    assert diversify(order, lambda pk: pk[0], None) == order


def test_bm25_gets_the_question_without_function_words_and_ranks_fuse_by_weight():
    assert keywords_of("How do I undo the last commit but keep it's changes?") == "undo last commit keep it's changes"
    assert keywords_of("Why is it not?") == "Why is it not"  # nothing but function words: all of them
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], [1.0, 0.5])
    assert fused["a"] == 1 / 61 and fused["b"] == 1 / 62 + 0.5 / 61 and fused["c"] == 0.5 / 62


# -- URLs: http(s) only, capped in size and time ---------------------------------------------------
@pytest.fixture
def web():
    """A local web server (127.0.0.1, a thread): a page, a redirect loop, a redirect out of http(s), a body
    over the size cap, one without Content-Length, and one that trickles."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Pages(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, body=b"", headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            if not any(name == "Transfer-Encoding" for name, _ in headers):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            page = b"<html><head><title>Web page</title></head><body><p>Served over local HTTP.</p></body></html>"
            if self.path == "/page.html":
                self.send(200, page, [("Content-Type", "text/html")])
            elif self.path == "/moved":
                self.send(302, headers=[("Location", "/page.html")])
            elif self.path == "/loop":
                self.send(302, headers=[("Location", "/loop")])
            elif self.path == "/to-file":
                self.send(302, headers=[("Location", "file:///etc/passwd")])
            elif self.path == "/big.txt":
                self.send(200, b"x" * 300_000, [("Content-Type", "text/plain")])
            elif self.path in ("/chunked.txt", "/slow.txt"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for _ in range(300):
                        self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")  # 1 KiB chunks, no declared size
                        self.wfile.flush()
                        if self.path == "/slow.txt":
                            time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should
            else:
                self.send(404, b"not found")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_are_capped_timed_and_redirected_only_to_http(web):
    from docbot_lib.core.settings import Settings

    settings = Settings.load(max_document_mb=0.25, url_timeout=1)

    def fetch(path):
        (item,) = discover(settings, [web + path])
        return item.fetch()

    assert b"Served over local HTTP" in fetch("/moved")
    for path, reason in (
        ("/big.txt", r"too large \(0.3 MB > 0.25 MB; raise DOCBOT_MAX_DOCUMENT_MB\)"),
        ("/chunked.txt", r"too large \(over 0.25 MB"),
        ("/slow.txt", r"no complete answer within 1 s .*raise DOCBOT_URL_TIMEOUT"),
        ("/loop", r"more than 5 redirects"),
        ("/to-file", r"a redirect leads to a URL that is not http\(s\)"),
        ("/missing", r"404"),
    ):
        with pytest.raises(BadDocument, match=reason):
            fetch(path)
    from docbot_lib.core.errors import DocbotError

    with pytest.raises(DocbotError, match="unsupported URL scheme"):
        discover(settings, ["ftp://127.0.0.1/doc.txt"])


# -- a changed document whose new version fails keeps its previous one -----------------------------
def changed_rag_page(docs: Path) -> None:
    (docs / "rag-basics.txt").write_text(
        "Retrieval\n\n"
        + "\n\n".join(
            f"Part {i}: a rewritten paragraph about reranking, number {i}, with enough words to be its own chunk "
            f"when packed next to others of its kind in the embedding model's tokens."
            for i in range(40)
        )
    )


def test_a_changed_document_that_fails_to_embed_keeps_its_previous_version(settings, docs, collection, monkeypatch):
    import docbot_lib.clients.embeddings

    ingest(settings, [str(docs)], collection=collection, progress=False)
    before = {r["pk"]: r["text"] for r in rows(settings, collection) if r["source"] == "rag-basics.txt"}
    changed_rag_page(docs)
    real = docbot_lib.clients.embeddings.get_embeddings(settings)

    class FailsOnReranking:  # the seam: the embedder is the only way to make embedding fail
        def __getattr__(self, name):
            return getattr(real, name)

        def embed_documents(self, texts):
            if any("reranking" in text for text in texts):
                raise RuntimeError("the embedding service answered 500")
            return real.embed_documents(texts)

    monkeypatch.setattr(docbot_lib.clients.embeddings, "get_embeddings", lambda settings: FailsOnReranking())
    (docs / "openshift-ai-model-serving.md").write_text("# Serving\nA changed page that embeds fine.\n")
    report = ingest(settings, [str(docs)], collection=collection, progress=False)
    reason = dict(report.skipped)["rag-basics.txt"]
    assert reason == (
        "could not be embedded: RuntimeError: the embedding service answered 500; kept the previous version"
    ), str(report)
    assert "rag-basics.txt: could not be embedded" in str(report) and "kept the previous version" in str(report)
    assert report.changed == 1  # the other changed page, in the same batch, is written
    after = {r["pk"]: r["text"] for r in rows(settings, collection) if r["source"] == "rag-basics.txt"}
    assert after == before
    hits = search(settings, "What is retrieval?", collection=collection, filter=source_filter(["rag-basics.txt"]))
    assert hits and "reranking" not in " ".join(h.text for h in hits)


def test_a_changed_document_that_fails_half_written_keeps_its_previous_version(settings, docs, collection, monkeypatch):
    ingest(settings, [str(docs)], collection=collection, progress=False)
    before = {r["pk"]: r["text"] for r in rows(settings, collection) if r["source"] == "rag-basics.txt"}
    changed_rag_page(docs)
    real = ChunkStore.replace_documents

    def half_written(self, documents, existing):
        upsert = self.client.upsert

        def fails_halfway(collection_name, data, **kw):  # the seam: Milvus failing mid-write
            if collection_name == self.name and len(data) > 1:
                upsert(collection_name, data[: len(data) // 2], **kw)
                raise RuntimeError("Milvus went away")
            return upsert(collection_name, data, **kw)

        self.client.upsert = fails_halfway
        try:
            return real(self, documents, existing)
        finally:
            self.client.upsert = upsert

    monkeypatch.setattr(ChunkStore, "replace_documents", half_written)
    report = ingest(settings, [str(docs)], collection=collection, progress=False)
    monkeypatch.undo()
    assert dict(report.skipped)["rag-basics.txt"] == (
        "could not be written: RuntimeError: Milvus went away; kept the previous version"
    ), str(report)
    assert {r["pk"]: r["text"] for r in rows(settings, collection) if r["source"] == "rag-basics.txt"} == before

    retry = ingest(settings, [str(docs)], collection=collection, progress=False)
    assert (retry.changed, retry.chunks_deleted, len(retry.skipped)) == (1, len(before), 0), str(retry)
    texts = [r["text"] for r in rows(settings, collection) if r["source"] == "rag-basics.txt"]
    assert len(texts) > 1 and all("reranking" in t for t in texts)


# -- bad input: one reason line each, the good documents are found ---------------------------------
def test_a_folder_of_broken_documents_is_ingested_with_a_reason_for_each(settings, tmp_path, collection, web):
    from broken_docs import build

    folder, expected = build(tmp_path)
    settings = settings.model_copy(update={"max_document_mb": 0.25, "url_timeout": 5})
    report = ingest(
        settings, [str(folder), web + "/page.html", web + "/big.txt"], collection=collection, progress=False
    )
    reasons = dict(report.skipped)
    for name, reason in expected.items():
        if reason is None:
            assert name not in reasons, str(report)
        else:
            assert reason in reasons.get(name, ""), (name, str(report))
    assert "too large" in reasons[web + "/big.txt"]
    assert len(report.skipped) == len([r for r in expected.values() if r]) + 1, str(report)
    assert "id_rsa" not in str([r["text"] for r in rows(settings, collection)])
    assert "read as Windows-1252" in dict(report.notes)["windows-1252.md"]

    # the good ones, and only they, are stored, each one whole: its rows are the chunks its record counts
    good = {name for name, reason in expected.items() if reason is None} | {web + "/page.html"}
    assert report.new == len(good)
    stored = rows(settings, collection)
    assert {r["source"] for r in stored} == good
    store = ChunkStore(settings, collection, create=False)
    try:
        records = store._query_all(store.docs, 'key != ""', ["source", "chunks"])
    finally:
        store.close()
    assert {r["source"]: r["chunks"] for r in records} == {s: sum(r["source"] == s for r in stored) for s in good}
    assert (
        search(settings, "Which role lets the chatbot search a collection?", k=1, collection=collection)[0].source
        == "milvus-on-openshift.html"
    )
    assert search(
        settings, "UTF-16 vector indexes", k=1, collection=collection, filter=source_filter(["utf16-with-bom.txt"])
    )[0].text.endswith("Grüße from a UTF-16 file about vector indexes.")


def test_inspect_collection_shows_schema_bm25_and_one_chunk(settings, docs, collection):
    from docbot_lib.pipeline.store import inspect_collection

    ingest(settings, [str(docs)], collection=collection, progress=False)
    view = inspect_collection(settings, collection, numbers=5)
    names = [line.split()[0] for line in view.fields]
    assert names[:3] == ["pk", "text", "dense"] and "sparse" in names and "source" in names
    assert "primary key" in view.fields[0] and "dim=384" in view.fields[2]
    assert view.functions == ["bm25: BM25(text) -> sparse"]
    assert any(i.startswith("dense: HNSW, COSINE") for i in view.indexes)
    assert any(i.startswith("sparse: SPARSE_INVERTED_INDEX, BM25") for i in view.indexes)
    assert view.rows > 0 and view.dimension == 384 and len(view.chunk["dense"]) == 5
    assert view.chunk["source"] and view.chunk["text"]
    shown = str(view)
    assert f"({view.dimension} numbers)" in shown and "bm25: BM25(text) -> sparse" in shown


def test_fit_cuts_metadata_to_the_field_limit_at_a_character_boundary():
    assert fit("short", 2048) == "short"
    cut = fit("é" * 3000, 2048)
    assert len(cut.encode()) <= 2048 and cut.endswith("\u2026") and set(cut[:-1]) == {"é"}


def test_a_page_whose_heading_is_never_closed_is_still_ingested(settings, tmp_path, collection):
    # SQLite's keyword_index.html: an <h2> never closed makes the whole page one 61,358-character heading
    folder = tmp_path / "unclosed"
    folder.mkdir()
    items = "".join(f'<li> <a href="page{n}.html">keyword {n}</a> </li>\n' for n in range(400))
    (folder / "index.html").write_text(
        f"<html><head><title>Website Keyword Index</title></head><body>"
        f"<h2 align=center>Keyword Index</h1><ul>{items}</ul>"
        f"<p>This page was last modified in 2016.</p></body></html>"
    )
    report = ingest(settings, [str(folder)], collection=collection, progress=False)
    assert (report.new, len(report.skipped)) == (1, 0), str(report)
    stored = rows(settings, collection)
    assert stored and all(len(r["section"].encode()) <= SECTION_MAX for r in stored)
