"""The judge: an optional OpenAI-compatible model (settings.judge_*) that scores an answer's faithfulness and
relevance 1-5, and its reply parsed.

Layer: pipeline, step `evaluate` (its judge): imports core, and clients.llm lazily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docbot_lib.core.errors import ConfigError, ServiceUnavailable
from docbot_lib.core.settings import Settings


@dataclass
class JudgeScore:
    faithfulness: int | None  # 1-5: is every claim supported by the passages
    relevance: int | None  # 1-5: does it answer the question
    detail: str = ""  # "could not parse: ..." when the judge's reply had no scores

    @property
    def parsed(self) -> bool:
        return self.faithfulness is not None and self.relevance is not None


JUDGE_PROMPT = (
    "You grade an answer given by a documentation chatbot. Rate from 1 (worst) to 5 (best):\n"
    "faithfulness: is every statement of the answer supported by the passages?\n"
    "relevance: does the answer address the question?\n\n"
    "Question: {question}\n\nPassages:\n{passages}\n\nAnswer: {answer}\n\n"
    "Reply with exactly two lines and nothing else:\nfaithfulness: <1-5>\nrelevance: <1-5>"
)


def parse_judge_reply(reply: str) -> JudgeScore:
    """Scores from a reply like "faithfulness: 4\\nrelevance: 5"; unparseable -> None with the reason."""
    found = {}
    for name in ("faithfulness", "relevance"):
        match = re.search(rf"{name}\W{{0,5}}([1-5])\b", reply, re.I)
        found[name] = int(match.group(1)) if match else None
    if None in found.values():
        return JudgeScore(None, None, "could not parse: " + " ".join(reply.split())[:120])
    return JudgeScore(found["faithfulness"], found["relevance"])


def judge_configured(settings: Settings) -> bool:
    return bool(settings.judge_base_url)


def judge_answer(settings: Settings, question: str, answer_text: str, passages: list[str]) -> JudgeScore:
    """Ask the judge model (settings.judge_*) to score faithfulness and relevance 1-5."""
    from langchain_core.messages import HumanMessage
    from langchain_core.output_parsers import StrOutputParser

    from docbot_lib.clients.llm import chat_model

    if not judge_configured(settings):
        raise ConfigError(
            "no judge model configured",
            "set DOCBOT_JUDGE_BASE_URL (and DOCBOT_JUDGE_MODEL, DOCBOT_JUDGE_API_KEY) to an OpenAI-compatible endpoint",
            service="judge",
        )
    judge = chat_model(
        settings.model_copy(
            update={
                "llm_base_url": settings.judge_base_url,
                "llm_model_name": settings.judge_model or settings.llm_model_name,
                "llm_api_key": settings.judge_api_key,
                "temperature": 0.0,
                "max_tokens": 24,
                "presence_penalty": 0.0,
                "llm_system_role": None,
            }
        )
    )
    numbered = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1))
    prompt = JUDGE_PROMPT.format(question=question, passages=numbered[:6000], answer=answer_text)
    try:
        reply = (judge | StrOutputParser()).invoke([HumanMessage(prompt)])
    except Exception as exc:  # noqa: BLE001 - the judge is optional: report why it gave no score
        raise ServiceUnavailable(
            f"the judge at {settings.judge_base_url} failed ({type(exc).__name__}: {exc})",
            "check DOCBOT_JUDGE_BASE_URL, DOCBOT_JUDGE_MODEL and DOCBOT_JUDGE_API_KEY",
            service="judge",
        ) from None
    return parse_judge_reply(reply)
