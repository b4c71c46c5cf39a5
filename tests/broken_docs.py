"""A folder of broken documents next to a few good ones, to ingest and check that each bad one is skipped
with its reason while the good ones are found.

    python tests/broken_docs.py /tmp/broken      # builds /tmp/broken/docs (and /tmp/broken/outside)

`build(base)` returns the folder and what the report must say about each document: a fragment of its
reason when skipped, None when it is ingested.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

from docbot_lib.pipeline.samples import prepare_sample_docs, write_pdf

GOOD = {
    "milvus-on-openshift.html",
    "openshift-ai-model-serving.md",
    "rag-basics.txt",
    "workshop-guide.pdf",
    "utf16-with-bom.txt",
    "windows-1252.md",
    "deep.html",
}


def encrypted_pdf(source: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password="only-the-author-knows", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def build(base: Path) -> tuple[Path, dict[str, str | None]]:
    """Sample documents plus one of each kind of bad input, in base/docs; a file outside it in base/outside."""
    folder = prepare_sample_docs(base / "docs")
    outside = base / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "id_rsa.md").write_text("# Not for the index\nA private key would be here.\n")
    noise = random.Random(15)

    pdf = write_pdf(base / "valid.pdf", "Truncated guide", [["A page about truncation."] * 20] * 3).read_bytes()
    (folder / "truncated.pdf").write_bytes(pdf[: len(pdf) // 3])
    (folder / "encrypted.pdf").write_bytes(encrypted_pdf(pdf))
    (folder / "zero-bytes.md").write_bytes(b"")
    (folder / "random-bytes.md").write_bytes(noise.randbytes(64 * 1024))
    (folder / "binary-without-nul.md").write_bytes(bytes(noise.randrange(1, 256) for _ in range(8192)))
    (folder / "nul-after-8k.txt").write_bytes(b"Plain words. " * 1000 + b"\x00" + b"more words " * 100)
    with open(folder / "fifty-mb.txt", "wb") as big:  # sparse: created at once, takes no disk
        big.write(b"starts like text\n")
        big.truncate(50 << 20)
    (folder / "deep.html").write_text(
        "<html><body>" + "<div>" * 5000 + "deep words" + "</div>" * 5000 + "</body></html>"
    )
    (folder / "utf16-with-bom.txt").write_text("Grüße from a UTF-16 file about vector indexes.\n", encoding="utf-16")
    (folder / "broken-utf16.txt").write_bytes("\ufeffhalf".encode("utf-16-le") + b"\x00\xd8")  # lone surrogate
    (folder / "windows-1252.md").write_bytes(
        "# Café\nA page saved as Windows-1252 about naïve search.\n".encode("cp1252")
    )
    (folder / "loop.md").symlink_to("loop.md")
    (folder / "ping.md").symlink_to("pong.md")
    (folder / "pong.md").symlink_to("ping.md")
    (folder / "outside-link.md").symlink_to(outside / "id_rsa.md")
    (folder / "dangling.md").symlink_to("no-such-file.md")

    expected: dict[str, str | None] = {name: None for name in GOOD}
    expected.update(
        {
            "truncated.pdf": "corrupt PDF",
            "encrypted.pdf": "encrypted PDF",
            "zero-bytes.md": "empty file",
            "random-bytes.md": "binary content in a text file (a NUL byte",
            "binary-without-nul.md": "binary content in a text file (",
            "nul-after-8k.txt": "binary content in a text file (a NUL byte at offset 13000)",
            "fifty-mb.txt": "too large (50.0 MB > ",
            "broken-utf16.txt": "invalid UTF-16",
            "loop.md": "a symlink loop",
            "ping.md": "a symlink loop",
            "pong.md": "a symlink loop",
            "outside-link.md": "outside the folder being ingested: not followed",
            "dangling.md": "a broken symlink",
        }
    )
    return folder, expected


if __name__ == "__main__":
    built, what = build(Path(sys.argv[1]))
    print(f"{built}: {len(what)} documents")
    for name, reason in sorted(what.items()):
        print(f"  {name}: {reason or 'ingested'}")
