"""The answer runs: each question (and each off-topic one) asked of the bot, its answer checked (citations,
expected page, support, refusal), timed per stage and judged when a judge is configured; the report and its
summary (`check_answers`).

Layer: pipeline, step `evaluate` (its answer runs): imports core, rag (and clients, store lazily), evaluate.questions,
evaluate.checks and evaluate.judge.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.evaluate.checks import citations_valid, cites_expected
from docbot_lib.pipeline.evaluate.judge import JudgeScore, judge_answer, judge_configured
from docbot_lib.pipeline.evaluate.questions import Question
from docbot_lib.pipeline.rag import is_refusal, support


@dataclass
class AnswerCheck:
    """One question asked of the bot, and what the checks found."""

    id: str
    question: str
    answer: str
    expected: list[str]  # empty for an off-topic question
    cited: list[str]  # sources of the cited passages
    retrieved: list[str]
    citations_valid: bool
    cites_expected: bool | None  # None for an off-topic question
    support: float  # share of the answer's content words found in the cited passages
    support_retrieved: float  # ... found in any passage it was given (an answer that cites nothing)
    refused: bool
    off_topic: bool
    timings: dict[str, float]  # seconds: rewrite, embed, search, retrieve, first_token, total
    judge: JudgeScore | None = None


@dataclass
class AnswerReport:
    checks: list[AnswerCheck]

    def _on_topic(self) -> list[AnswerCheck]:
        return [c for c in self.checks if not c.off_topic]

    def summary(self) -> dict[str, float]:
        """Shares over the questions (on-topic ones, except refusal_off_topic)."""
        on, off = self._on_topic(), [c for c in self.checks if c.off_topic]
        answered = [c for c in on if not c.refused]

        def share(items, test) -> float:
            return sum(1 for c in items if test(c)) / len(items) if items else float("nan")

        judged = [c.judge for c in on if c.judge and c.judge.parsed]
        return {
            "questions": len(on),
            "off_topic": len(off),
            "citations_valid": share(on, lambda c: c.citations_valid),
            "cites_expected": share(on, lambda c: c.cites_expected),
            "support_mean": statistics.fmean(c.support for c in answered) if answered else float("nan"),
            "support_retrieved_mean": (
                statistics.fmean(c.support_retrieved for c in answered) if answered else float("nan")
            ),
            "refused_on_topic": share(on, lambda c: c.refused),
            "refusal_off_topic": share(off, lambda c: c.refused),
            "judge_faithfulness": statistics.fmean(j.faithfulness or 0 for j in judged) if judged else float("nan"),
            "judge_relevance": statistics.fmean(j.relevance or 0 for j in judged) if judged else float("nan"),
        }

    def __str__(self) -> str:
        lines = [
            f"{'id':<8} {'valid cites':>11} {'cites page':>10} {'support':>8} {'in context':>10} {'refused':>8}"
            f"  judge  answer"
        ]
        for c in self.checks:
            expected = "-" if c.cites_expected is None else ("yes" if c.cites_expected else "no")
            judge = (
                f"{c.judge.faithfulness}/{c.judge.relevance}" if c.judge and c.judge.parsed else "?" if c.judge else "-"
            )
            text = " ".join(c.answer.split())
            lines.append(
                f"{c.id:<8} {'yes' if c.citations_valid else 'NO':>11} {expected:>10} {c.support:>8.2f} "
                f"{c.support_retrieved:>10.2f} {'yes' if c.refused else 'no':>8}  {judge:<5}  {text[:70]}{'...' if len(text) > 70 else ''}"
            )
        s = self.summary()
        lines.append(
            f"on-topic {s['questions']}: valid citations {s['citations_valid']:.0%}, cite an expected page "
            f"{s['cites_expected']:.0%}, support {s['support_mean']:.2f} "
            f"(in context {s['support_retrieved_mean']:.2f}), refused {s['refused_on_topic']:.0%}"
            f" | off-topic {s['off_topic']}: refused {s['refusal_off_topic']:.0%}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "checks": [asdict(c) for c in self.checks]}


def check_answers(
    settings: Settings,
    questions: list[Question],
    collection: str | None = None,
    off_topic: Iterable[str] = (),
    judge: bool | None = None,
    progress: bool = True,
) -> AnswerReport:
    """Ask the bot each question (and each off-topic one) and check its answer; judge it when a judge model
    is configured (`judge` None) or asked for (True). Each answer is one LLM call: keep the set small."""
    from tqdm.auto import tqdm

    from docbot_lib.clients.embeddings import get_embeddings
    from docbot_lib.pipeline.rag import RagChain
    from docbot_lib.pipeline.store import open_store

    judge = judge_configured(settings) if judge is None else judge
    bot = RagChain(settings, collection)
    embedder, store = get_embeddings(settings), open_store(settings, collection)
    items = [(q, False) for q in questions] + [
        (Question(f"off{n}", text, frozenset()), True) for n, text in enumerate(off_topic, start=1)
    ]
    checks = []
    for q, off in tqdm(items, desc="answers", disable=not progress):
        answer = bot.ask(q.question)
        # the passages' text is not on the Answer: the retriever is deterministic, so ask it again
        hits = bot.retriever.hits(answer.standalone_question) if answer.found else []
        by_number = {h.rank: h for h in hits}
        cited_text = [by_number[s.number].text for s in answer.sources if s.number in by_number]
        timings = dict(answer.timings)
        # RagChain times embedding and search together; time them apart on the same question
        mark = time.perf_counter()
        vector = embedder.embed_query(answer.standalone_question)
        timings["embed"] = time.perf_counter() - mark
        mark = time.perf_counter()
        store.search(vector, answer.standalone_question, k=bot.retriever.k, hybrid=settings.hybrid)
        timings["search"] = time.perf_counter() - mark
        check = AnswerCheck(
            q.id,
            q.question,
            answer.text,
            sorted(q.expected),
            [s.source for s in answer.sources],
            [s.source for s in answer.retrieved],
            citations_valid(answer.text, [s.number for s in answer.retrieved]),
            None if off else cites_expected((s.source for s in answer.sources), q.expected),
            support(answer.text, cited_text) if answer.found else 0.0,
            support(answer.text, [h.text for h in hits]) if answer.found else 0.0,
            is_refusal(answer.text, answer.found),
            off,
            timings,
        )
        if judge and answer.found and not off:
            check.judge = judge_answer(settings, q.question, answer.text, cited_text or [h.text for h in hits])
        checks.append(check)
    return AnswerReport(checks)
