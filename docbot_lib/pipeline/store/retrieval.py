"""Searching a collection of chunks: dense and (where the server has it) BM25 candidates fused by reciprocal
rank, a few chunks a document first, and the cosine similarity of every hit (fetched for those only BM25 found).

Layer: pipeline, step `store` (its search): imports store.ranking and store.record.
"""

from __future__ import annotations

from dataclasses import dataclass

from docbot_lib.pipeline.store.ranking import BM25_WEIGHT, diversify, keywords_of, reciprocal_rank_fusion
from docbot_lib.pipeline.store.record import quote

OUTPUT = ["text", "source", "root", "title", "section", "page", "chunk_index"]


@dataclass
class Hit:
    rank: int
    source: str
    title: str
    section: str
    page: int
    text: str
    score: float  # cosine similarity of the chunk to the question (-1..1; higher is closer)
    fused: float = 0.0  # reciprocal-rank-fusion score (hybrid) that set the rank
    root: str = ""
    chunk_index: int = 0

    def __str__(self) -> str:
        where = (
            self.source + (f", page {self.page}" if self.page else "") + (f" · {self.section}" if self.section else "")
        )
        body = self.text.partition("\n")[2].replace("\n", " ")
        return f"{self.rank}. [{self.score:.2f}] {where}\n   {body[:160]}{'...' if len(body) > 160 else ''}"

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "page": self.page or None,
            "score": round(self.score, 4),
            "text": self.text,
        }


class ChunkSearch:
    """Searches of the chunks of collection `name` through `client`; `hybrid`: the collection has BM25."""

    def __init__(self, client, name: str, hybrid: bool):
        self.client, self.name, self.hybrid = client, name, hybrid

    def search(
        self,
        query_vector: list[float],
        query_text: str,
        k: int = 5,
        filter: str = "",
        min_similarity: float | None = None,
        hybrid: bool = True,
        per_source: int | None = 1,
    ) -> list[Hit]:
        """The k best chunks: dense and (where available) BM25 candidates fused by reciprocal rank, with at
        most `per_source` chunks of one document before the others have had their turn (None: no limit).
        Each hit's `score` is its cosine similarity; with `min_similarity`, hits below it are dropped
        (and a question whose best chunk is below it gets no hits: nothing relevant)."""

        candidates = max(k * 4, 20)
        dense = self.client.search(
            self.name,
            data=[query_vector],
            anns_field="dense",
            limit=candidates,
            filter=filter,
            search_params={"metric_type": "COSINE", "params": {"ef": max(64, candidates)}},
            output_fields=OUTPUT,
        )[0]
        # hit.id: the primary key under its own name ("pk"), or "id" from a server that does not name it (2.3)
        rankings = [[h.id for h in dense]]
        rows = {h.id: {**h["entity"], "score": float(h["distance"])} for h in dense}
        keywords = keywords_of(query_text)
        if hybrid and self.hybrid and keywords:
            sparse = self.client.search(
                self.name,
                data=[keywords],
                anns_field="sparse",
                limit=candidates,
                filter=filter,
                search_params={"metric_type": "BM25", "params": {}},
                output_fields=OUTPUT,
            )[0]
            rankings.append([h.id for h in sparse])
            for h in sparse:
                rows.setdefault(h.id, {**h["entity"], "score": None})  # cosine fetched below if needed
        fused = reciprocal_rank_fusion(rankings, [1.0, BM25_WEIGHT])
        order = diversify(
            sorted(fused, key=lambda pk: -fused[pk]), lambda pk: (rows[pk]["root"], rows[pk]["source"]), per_source
        )[: 2 * k]
        self._fill_similarity([pk for pk in order if rows[pk]["score"] is None], rows, query_vector)
        if min_similarity is not None:
            if not rows or max(r["score"] for r in rows.values() if r["score"] is not None) < min_similarity:
                return []
            order = [pk for pk in order if rows[pk]["score"] >= min_similarity]
        return [
            Hit(
                rank,
                rows[pk]["source"],
                rows[pk]["title"],
                rows[pk]["section"],
                rows[pk]["page"],
                rows[pk]["text"],
                rows[pk]["score"],
                fused[pk],
                rows[pk]["root"],
                rows[pk]["chunk_index"],
            )
            for rank, pk in enumerate(order[:k], start=1)
        ]

    def _fill_similarity(self, pks: list[str], rows: dict, query_vector: list[float]) -> None:
        """Cosine similarity of chunks only BM25 found (their vectors fetched for the few that rank)."""
        if not pks:
            return
        import numpy as np

        q = np.asarray(query_vector, dtype=np.float32)
        for pk in pks:
            rows[pk]["score"] = -1.0  # unless its vector comes back below
        for row in self.client.get(self.name, ids=pks, output_fields=["dense"]):
            vector = np.asarray(row["dense"], dtype=np.float32)
            rows[row["pk"]]["score"] = float(vector @ q) / max(float(np.linalg.norm(vector) * np.linalg.norm(q)), 1e-12)


def source_filter(sources: list[str]) -> str:
    """A filter expression keeping chunks from these sources only."""
    return "source in [" + ", ".join(quote(s) for s in sources) + "]"
