"""The small documentation set the lab ingests: Markdown, HTML and text pages shipped in sample-docs/,
plus a PDF generated here (so the repository carries no binary).

Layer: pipeline, step `samples`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from docbot_lib.core.envfile import project_dir

GUIDE_TITLE = "Doc Bot workshop guide"
GUIDE_PAGES = [
    [
        "Doc Bot workshop guide",
        "",
        "Page 1: the model path.",
        "Notebook 01 downloads Mistral-7B-Instruct-v0.2 from Hugging Face. The model is gated: accept its",
        "licence on the model page and put a token in HF_TOKEN. Only safetensors weights are downloaded,",
        "about 14.5 GB. Notebook 02 uploads the folder to S3 under models/<model id>/ and creates the",
        "data connection. Notebook 03 deploys vLLM on KServe and checks the OpenAI-compatible endpoint.",
    ],
    [
        "Page 2: the document path.",
        "Notebook 04 deploys Milvus with authentication on, changes the root password and creates one user",
        "per application. Notebook 05 ingests the documentation: a re-run skips unchanged pages.",
        "Notebook 06 asks questions: the chatbot answers with numbered citations and lists its sources.",
        "Notebook 07 measures retrieval with hit@k and MRR on a question set.",
    ],
]


def write_pdf(path: Path, title: str, pages: list[list[str]]) -> Path:
    """A plain PDF with a text layer (Helvetica, one line per string) and a Title in its metadata."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects: list[bytes] = []

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("<< /Type /Catalog /Pages 2 0 R >>")
    pages_id = add("")  # filled in below, once the page ids are known
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for lines in pages:
        wrapped = [w for line in lines for w in (textwrap.wrap(line, 95) or [""])]
        stream = "BT /F1 11 Tf 14 TL 56 790 Td " + " ".join(f"({escape(w)}) Tj T*" for w in wrapped) + " ET"
        content = add(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        kids.append(
            add(
                f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 595 842] "
                f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
            )
        )
    objects[pages_id - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    ).encode("latin-1")
    info = add(f"<< /Title ({escape(title)}) /Producer (Doc Bot) >>")

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    path.write_bytes(bytes(out))
    return path


def prepare_sample_docs(dest: Path) -> Path:
    """Copy sample-docs/ to `dest` and add the generated PDF guide; returns `dest`. Re-running keeps
    unchanged files byte for byte (so a re-ingest skips them)."""
    dest.mkdir(parents=True, exist_ok=True)
    for source in sorted((project_dir() / "sample-docs").iterdir()):
        target = dest / source.name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    pdf = dest / "workshop-guide.pdf"
    fresh = dest / ".workshop-guide.pdf.tmp"
    write_pdf(fresh, GUIDE_TITLE, GUIDE_PAGES)
    if pdf.exists() and pdf.read_bytes() == fresh.read_bytes():
        fresh.unlink()
    else:
        fresh.replace(pdf)
    return dest
