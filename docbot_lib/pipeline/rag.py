"""Ask the bot: retrieval-augmented answers with numbered citations and their sources.

    bot = RagChain(settings)
    answer = bot.ask("How do I ...?", history=[("user", "..."), ("assistant", "...")])
    for piece in bot.stream("And then?", history):   # str pieces, then the final Answer
        ...

The chain, in LCEL pieces: (follow-up + history -> a standalone question) -> retrieve (hybrid search in
Milvus) -> numbered context with titles and sections -> the chat model on the OpenAI-compatible endpoint
-> a streamed answer citing [1], [2] -> the cited sources. When nothing relevant is found the bot says
so without asking the model (it would invent). Chat messages are used, not a hand-written model template;
for models whose chat template has no system role (Mistral-7B-Instruct-v0.2) the instructions are folded
into the first user turn.

Layer: pipeline, step `rag`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.store import Hit

INSTRUCTIONS = (
    "You are Doc Bot, an assistant that answers questions about documentation. Answer only from the numbered "
    "context passages below. Cite the passages you use with their numbers in square brackets, like [1] or "
    "[2][3]. If the context does not contain the answer, say that you do not know. Be concise."
)
CONDENSE = (
    "Rewrite the last question of this conversation as one standalone question that can be understood "
    "without the conversation. Reply with the question only.\n\nConversation:\n{history}\n\n"
    "Last question: {question}\nStandalone question:"
)
NOT_FOUND = (
    "I don't know: nothing in the ingested documentation matches this question closely enough. "
    "Try rephrasing it, or ingest the pages that answer it."
)
# Chat templates that reject a system message (Mistral-7B-Instruct v0.1/v0.2 raise on it).
# Served names are DNS labels too ("mistral-7b-instruct-v0-2", docbot_lib.pipeline.serving.serving_name).
NO_SYSTEM_ROLE = re.compile(r"mistral-7b-instruct(-v0[.-][12])?$|mixtral-8x7b-instruct", re.I)

History = Sequence[tuple[str, str]]  # (role "user"|"assistant", text)


@dataclass
class Source:
    number: int  # as cited: [number]
    title: str
    source: str  # path relative to the ingested folder, URL or S3 key
    section: str = ""
    page: int | None = None
    score: float = 0.0

    def __str__(self) -> str:
        where = self.source + (f", page {self.page}" if self.page else "")
        return f"[{self.number}] {self.title}" + (f" › {self.section}" if self.section else "") + f" ({where})"

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "title": self.title,
            "source": self.source,
            "section": self.section,
            "page": self.page,
            "score": round(self.score, 4),
        }


@dataclass
class Answer:
    question: str
    standalone_question: str
    text: str
    sources: list[Source]  # the passages the answer cites
    retrieved: list[Source]  # every passage given to the model
    timings: dict[str, float] = field(default_factory=dict)  # seconds: rewrite, retrieve, first_token, total
    found: bool = True  # False: nothing relevant was retrieved, the model was not asked
    grounding: Grounding | None = None  # does the answer rest on its sources? (None: the model was not asked)

    def note(self) -> str:
        """What the reader should know about this answer's sources: '' when it is grounded in them."""
        return self.grounding.note() if self.grounding else ""

    def __str__(self) -> str:
        lines = [self.text.strip(), ""]
        if self.note():
            lines += [f"Note: {self.note()}", ""]
        lines += [f"  {s}" for s in (self.sources or self.retrieved)]
        lines.append("  (" + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.timings.items()) + ")")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def cited_numbers(text: str) -> list[int]:
    """The passage numbers an answer cites, in first-cited order: "[2] ... [1][2]" -> [2, 1]."""
    seen: list[int] = []
    for group in re.findall(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]", text):
        for number in re.split(r"\s*[,;]\s*", group):
            if int(number) not in seen:
                seen.append(int(number))
    return seen


def format_context(hits: list[Hit]) -> str:
    """Numbered passages: "[n] title › section (source, page)" then the chunk's text."""
    blocks = []
    for hit in hits:
        body = hit.text.partition("\n")[2] or hit.text
        where = hit.source + (f", page {hit.page}" if hit.page else "")
        heading = hit.title + (f" › {hit.section}" if hit.section else "")
        blocks.append(f"[{hit.rank}] {heading} ({where})\n{body}")
    return "\n\n".join(blocks)


def supports_system_role(settings: Settings) -> bool:
    """False for models whose chat template rejects a system message (then instructions go in the user turn)."""
    if settings.llm_system_role is not None:
        return settings.llm_system_role
    return not NO_SYSTEM_ROLE.search(settings.llm_model_name)


def build_messages(
    question: str, context: str, history: History, system_role: bool, instructions: str = INSTRUCTIONS
) -> list[BaseMessage]:
    """Chat messages for the answer: instructions + context, the history, the question."""
    preamble = f"{instructions}\n\nContext:\n{context}"
    turns: list[BaseMessage] = [HumanMessage(t) if role == "user" else AIMessage(t) for role, t in history]
    if system_role:
        return [SystemMessage(preamble), *turns, HumanMessage(question)]
    # fold the instructions into the first user turn; the template then alternates user/assistant
    if turns and isinstance(turns[0], HumanMessage):
        turns[0] = HumanMessage(f"{preamble}\n\n{turns[0].content}")
        return [*turns, HumanMessage(question)]
    return [*turns, HumanMessage(f"{preamble}\n\nQuestion: {question}")]


# -- is an answer grounded in its sources? (the same measure as evaluation's answer checks) -------------
# Words that carry no content: an answer's support is measured on the others.
STOPWORDS = frozenset(
    """
a about above after again all also am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its itself just me more most my no nor not now of off on once only or other our ours out
over own same she should so some such than that the their theirs them then there these they this those through
to too under until up very was we were what when where which while who whom why will with would you your yours
use used using one two yes
""".split()
)
REFUSAL = re.compile(
    r"\b(i )?(don'?t|do not|cannot|can'?t|could not|couldn'?t) (know|find|answer|tell)|"
    r"\bno (relevant )?information\b|\bnot (mentioned|covered|in the (context|documentation))\b",
    re.I,
)


def content_words(text: str) -> set[str]:
    """The distinct lower-cased words of a text minus stop words, numbers-only tokens and citation marks."""
    text = re.sub(r"\[\d+(?:\s*[,;]\s*\d+)*\]", " ", text)
    return {
        w
        for w in re.findall(r"[a-z0-9][a-z0-9_.\-/]*[a-z0-9]|[a-z]", text.lower())
        if w not in STOPWORDS and not w.isdigit() and len(w) > 1
    }


def support(answer_text: str, passages: Iterable[str]) -> float:
    """Share of the answer's distinct content words found in the passages' text (0..1; 1.0 for an empty answer
    would hide a problem, so an answer without content words scores 0)."""
    words = content_words(answer_text)
    if not words:
        return 0.0
    cited = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & cited) / len(words)


def is_refusal(answer_text: str, found: bool = True) -> bool:
    """The bot declined: nothing was retrieved (`found` False), or the text says it does not know."""
    return not found or bool(REFUSAL.search(answer_text))


SUPPORTED = 0.5  # an answer whose content words appear less than this in the passages it cites is flagged
EXCERPT = 240  # characters of the best-matching passage shown with a flagged answer


@dataclass
class Grounding:
    """Does the answer rest on the passages? It cites one at least, and `support` of its content words appear in
    the passages it cites. When not, `note()` says so and shows the best-matching passage: a tiny model often
    answers beside its sources, and the learner should read the passage rather than trust the answer."""

    cited: bool
    support: float  # 0..1, in the cited passages (in every retrieved one when none is cited)
    refused: bool  # the answer says it does not know
    best: Source  # the best-matching passage (rank 1 of the search)
    excerpt: str

    @property
    def ok(self) -> bool:
        return self.cited and self.support >= SUPPORTED and not self.refused

    def note(self) -> str:
        """'' for a grounded answer; otherwise why it is not, and the passage to read instead."""
        if self.ok:
            return ""
        if self.refused:
            why = "The bot did not find the answer in the passages it was given."
        elif not self.cited:
            why = "This answer cites none of the passages: it may not come from the documentation."
        else:
            why = (
                f"Only {self.support:.0%} of this answer's words appear in the passages it cites: "
                "check it against them."
            )
        return f"{why} The best-matching passage is {self.best}: \u201c{self.excerpt}\u201d"

    def to_dict(self) -> dict:
        return {
            "grounded": self.ok,
            "cited": self.cited,
            "support": round(self.support, 3),
            "refused": self.refused,
            "note": self.note(),
            "best": {**self.best.to_dict(), "excerpt": self.excerpt},
        }


def excerpt_for(passage: str, question: str = "", limit: int = EXCERPT) -> str:
    """The part of a passage a reader should see for `question`: from the sentence that shares the most words
    with the question (the first one when none does), at most `limit` characters, "\u2026" where it was cut."""

    def stems(text: str) -> set[str]:  # "roles" meets "role", "gets" meets "get"
        return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in content_words(text)}

    sentences = re.split(r"(?<=[.!?])\s+", " ".join(passage.split()))
    words = stems(question)
    start = max(range(len(sentences)), key=lambda i: (len(stems(sentences[i]) & words), -i)) if words else 0
    excerpt = " ".join(sentences[start:])
    if len(excerpt) > limit:
        excerpt = excerpt[:limit].rsplit(" ", 1)[0] + " \u2026"
    return ("\u2026 " if start else "") + excerpt


def grounding(text: str, hits: list[Hit], question: str = "") -> Grounding:
    """The grounding of an answer `text` to `question` given the passages it was shown (`hits`, in [n] order)."""
    by_number = {h.rank: h for h in hits}
    cited = [by_number[n] for n in cited_numbers(text) if n in by_number]
    body = (hits[0].text.partition("\n")[2] or hits[0].text).strip()
    best = Source(hits[0].rank, hits[0].title, hits[0].source, hits[0].section, hits[0].page or None, hits[0].score)
    return Grounding(
        bool(cited),
        support(text, [h.text for h in (cited or hits)]),
        is_refusal(text),
        best,
        excerpt_for(body, question),
    )


def show_messages(messages: Sequence[BaseMessage]) -> str:
    """The chat messages as the model reads them, one block per message headed by its role."""
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return "\n\n".join(f"──── {roles.get(m.type, m.type)} ────\n{m.content}" for m in messages)


class DocbotRetriever(BaseRetriever):
    """A LangChain retriever over Doc Bot's Milvus collection (hybrid where available)."""

    settings: Settings
    collection: str | None = None
    k: int = 4
    min_similarity: float | None = None

    def hits(self, query: str) -> list[Hit]:
        from docbot_lib.pipeline.store import search

        return search(self.settings, query, k=self.k, collection=self.collection, min_similarity=self.min_similarity)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(
                h.text,
                metadata={
                    "source": h.source,
                    "title": h.title,
                    "section": h.section,
                    "page": h.page,
                    "score": h.score,
                    "rank": h.rank,
                },
            )
            for h in self.hits(query)
        ]


class RagChain:
    """The RAG chain for one collection: ask() for a whole answer, stream() for its pieces."""

    def __init__(self, settings: Settings, collection: str | None = None, k: int | None = None):
        from docbot_lib.clients.llm import chat_model

        self.settings = settings
        self.retriever = DocbotRetriever(
            settings=settings, collection=collection, k=k or settings.search_k, min_similarity=settings.min_similarity
        )
        self.llm = chat_model(settings)
        # the rewrite is one short question: a small token budget keeps it fast
        self.condense = chat_model(settings.model_copy(update={"max_tokens": 96})) | StrOutputParser()
        self.answer_chain = self.llm | StrOutputParser()
        self.system_role = supports_system_role(settings)

    def standalone(self, question: str, history: History) -> str:
        """The follow-up question rewritten to stand alone (the question itself when there is no history)."""
        if not history:
            return question
        transcript = "\n".join(f"{role}: {text}" for role, text in history[-6:])
        rewritten = (
            self.condense.invoke([HumanMessage(CONDENSE.format(history=transcript, question=question))])
            .strip()
            .split("\n")[0]
            .strip()
        )
        # a small model may answer instead of rewriting: keep the original words in the search too
        return f"{rewritten} {question}" if rewritten and rewritten.lower() != question.lower() else question

    def _messages(self, question: str, hits: list[Hit], history: History) -> list[BaseMessage]:
        return build_messages(
            question, format_context(hits), history, self.system_role, self.settings.rag_instructions or INSTRUCTIONS
        )

    def prompt(self, question: str, history: History = ()) -> list[BaseMessage]:
        """The exact messages the model would get for this question (instructions, numbered passages, history,
        question), without asking it for an answer; `show_messages()` prints them. With history, the follow-up
        is rewritten first (that is one call to the model). Empty when nothing relevant is retrieved: the
        model is then not asked at all."""
        hits = self.retriever.hits(self.standalone(question, history))
        return self._messages(question, hits, history) if hits else []

    def stream(self, question: str, history: History = ()) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the final Answer (with sources and timings)."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        standalone = self.standalone(question, history)
        timings["rewrite"] = time.perf_counter() - start
        mark = time.perf_counter()
        hits = self.retriever.hits(standalone)
        timings["retrieve"] = time.perf_counter() - mark
        retrieved = [Source(h.rank, h.title, h.source, h.section, h.page or None, h.score) for h in hits]
        if not hits:
            timings["total"] = time.perf_counter() - start
            yield NOT_FOUND
            yield Answer(question, standalone, NOT_FOUND, [], [], timings, found=False)
            return
        messages = self._messages(question, hits, history)
        pieces: list[str] = []
        for piece in self.answer_chain.stream(messages):
            if not pieces:
                timings["first_token"] = time.perf_counter() - start
            pieces.append(piece)
            yield piece
        text = "".join(pieces)
        timings["total"] = time.perf_counter() - start
        by_number = {s.number: s for s in retrieved}
        cited = [by_number[n] for n in cited_numbers(text) if n in by_number]
        yield Answer(question, standalone, text, cited, retrieved, timings, grounding=grounding(text, hits, standalone))

    def ask(self, question: str, history: History = ()) -> Answer:
        """The whole answer at once."""
        *_, answer = self.stream(question, history)
        assert isinstance(answer, Answer)  # stream() ends with the Answer
        return answer

    def ask_without_context(self, question: str) -> str:
        """The model alone, no retrieval: to compare with a RAG answer."""
        return self.answer_chain.invoke([HumanMessage(question)])
