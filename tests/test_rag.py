"""The RAG chain and the notebook chat, against the real LLM server and Milvus of the local stack.
The 135M model answers poorly: these tests assert on structure (streaming, citations, sources), not facts."""

from __future__ import annotations

import uuid

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from docbot_lib.pipeline.ingest import ingest
from docbot_lib.pipeline.rag import (
    INSTRUCTIONS,
    NOT_FOUND,
    Answer,
    RagChain,
    build_messages,
    cited_numbers,
    show_messages,
    supports_system_role,
)
from docbot_lib.pipeline.samples import prepare_sample_docs


@pytest.fixture(scope="module")
def sample_collection(tmp_path_factory, _session_stack):
    from docbot_lib.core.settings import Settings

    stack, env = _session_stack
    settings = Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()})
    name = f"rag_{uuid.uuid4().hex[:8]}"
    ingest(settings, [str(prepare_sample_docs(tmp_path_factory.mktemp("docs")))], collection=name, progress=False)
    return name


def test_cited_numbers_in_first_cited_order():
    assert cited_numbers("See [2] and [1][2], also [3, 4].") == [2, 1, 3, 4]
    assert cited_numbers("no citations (2)") == []


def _hit(rank: int, text: str, source: str = "page.md"):
    from docbot_lib.pipeline.store import Hit

    return Hit(rank, source, f"Page {rank}", "", 0, f"Page {rank} header\n{text}", 0.5)


def test_an_answer_is_flagged_unless_it_rests_on_the_passages_it_cites():
    from docbot_lib.pipeline.rag import grounding

    hits = [
        _hit(1, "Grant the chatbot's user the reader role: search and query only. " + "padding " * 60),
        _hit(2, "Change the root password with the update_password call."),
    ]
    good = grounding("Give it the reader role, for search and query [1].", hits)
    assert good.ok and good.note() == "" and good.cited and good.support >= 0.5
    uncited = grounding("Give it the reader role, for search and query.", hits)
    assert not uncited.ok and uncited.note().startswith("This answer cites none of the passages")
    beside = grounding("Use Edit > Paste Special in the spreadsheet menu [2].", hits)
    assert not beside.ok and beside.note().startswith("Only 0% of this answer's words appear in the passages it cites")
    refused = grounding("I don't know [1].", hits)
    assert not refused.ok and refused.note().startswith("The bot did not find the answer")
    # every flagged answer shows the best-matching passage (rank 1), its opening shortened
    for flagged in (uncited, beside, refused):
        assert "[1] Page 1 (page.md): \u201cGrant the chatbot's user the reader role" in flagged.note()
        assert flagged.excerpt.endswith("\u2026") and len(flagged.excerpt) <= 242
    # ... or, given the question, from the sentence that answers it
    passage = (
        "Authentication is off by default. The first user is root: change its password at once. Give each "
        "application its own user. The chatbot needs only to search, so its role docbot_reader gets Search."
    )
    hits = [_hit(1, passage)]
    shown = grounding("An admin role.", hits, "Which role should the chatbot's Milvus user get?").excerpt
    assert shown == "\u2026 The chatbot needs only to search, so its role docbot_reader gets Search."
    assert grounding("x", hits).excerpt.startswith("Authentication is off by default.")
    assert grounding("reader role [1]", hits).to_dict()["best"]["source"] == "page.md"


def test_the_widget_shows_the_note_above_the_sources():
    from docbot_lib.pipeline.chat import sources_html
    from docbot_lib.pipeline.rag import Answer, Source, grounding

    hits = [_hit(1, "Grant the reader role.")]
    shown = [Source(1, "Page 1", "page.md")]
    flagged = Answer("q", "q", "Paste Special.", [], shown, grounding=grounding("Paste Special.", hits))
    assert "cites none of the passages" in sources_html(flagged) and "Retrieved (not cited)" in sources_html(flagged)
    fine = Answer(
        "q", "q", "Grant the reader role [1].", shown, shown, grounding=grounding("Grant the reader role [1].", hits)
    )
    assert "cites none" not in sources_html(fine) and "Only" not in sources_html(fine)


def test_models_without_a_system_role_get_the_instructions_in_the_first_user_turn(settings):
    mistral = settings.model_copy(update={"llm_model_name": "mistral-7b-instruct"})
    assert not supports_system_role(mistral)
    assert supports_system_role(settings.model_copy(update={"llm_model_name": "granite-3-8b-instruct"}))
    # the name notebook 03 derives from the model id is a DNS label: "v0-2", not "v0.2"
    assert not supports_system_role(settings.model_copy(update={"llm_model_name": "mistral-7b-instruct-v0-2"}))
    folded = build_messages("Q2?", "[1] ctx", [("user", "Q1?"), ("assistant", "A1.")], system_role=False)
    assert [type(m).__name__ for m in folded] == ["HumanMessage", "AIMessage", "HumanMessage"]
    assert folded[0].content.startswith("You are Doc Bot") and folded[0].content.endswith("Q1?")
    assert "[1] ctx" in folded[0].content
    first_turn = build_messages("Q?", "[1] ctx", [], system_role=False)
    assert (
        len(first_turn) == 1
        and isinstance(first_turn[0], HumanMessage)
        and first_turn[0].content.endswith("Question: Q?")
    )
    with_system = build_messages("Q?", "[1] ctx", [], system_role=True)
    assert isinstance(with_system[0], SystemMessage) and with_system[-1].content == "Q?"
    own = build_messages("Q?", "[1] ctx", [], system_role=True, instructions="Answer in French.")
    assert own[0].content.startswith("Answer in French.\n\nContext:\n[1] ctx")


def test_answer_streams_and_lists_its_sources(settings, sample_collection):
    bot = RagChain(settings, collection=sample_collection, k=3)
    pieces = list(bot.stream("Why does vLLM need a /dev/shm volume?"))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and all(isinstance(p, str) for p in pieces[:-1])
    assert len(pieces) > 3, "the answer arrives in pieces (streaming)"
    assert "".join(pieces[:-1]) == answer.text and answer.text.strip()
    assert answer.found and answer.retrieved[0].source == "openshift-ai-model-serving.md"
    assert [s.number for s in answer.retrieved] == list(range(1, len(answer.retrieved) + 1))
    assert all(s in answer.retrieved for s in answer.sources)  # only passages that exist can be cited
    assert {"rewrite", "retrieve", "first_token", "total"} <= set(answer.timings)
    assert answer.timings["first_token"] <= answer.timings["total"]
    # the verdict on the answer's sources is computed, and said when it is not grounded
    assert answer.grounding is not None and (answer.note() == "") == answer.grounding.ok


def test_follow_up_is_rewritten_with_the_history(settings, sample_collection):
    bot = RagChain(settings, collection=sample_collection, k=2)
    history = [("user", "What does Milvus standalone need?"), ("assistant", "Embedded etcd and a PVC [1].")]
    answer = bot.ask("And the cluster mode?", history)
    assert "And the cluster mode?" in answer.standalone_question  # the words of the question are searched too
    assert answer.timings["rewrite"] > 0.01  # the model was asked to rewrite
    assert answer.retrieved


def test_nothing_relevant_means_i_do_not_know_without_asking_the_model(settings, sample_collection):
    answer = RagChain(settings, collection=sample_collection).ask("What is the best recipe for a chocolate cake?")
    assert not answer.found and answer.text == NOT_FOUND and answer.retrieved == []
    assert "first_token" not in answer.timings and answer.grounding is None


def test_chat_widget_keeps_the_conversation_and_clears_it(settings, sample_collection):
    from docbot_lib.pipeline.chat import ChatUI

    chat = ChatUI(settings.model_copy(update={"milvus_collection": sample_collection, "search_k": 2}))
    assert chat.collection.value == sample_collection and sample_collection in chat.collection.options
    first = chat.ask("Which role does the chatbot's Milvus user get?")
    chat.ask("And the ingestion job?")
    assert len(chat.history) == 4 and chat.history[0] == ("user", first.question)
    assert "You:</b> And the ingestion job?" in chat.transcript.value
    assert "milvus-on-openshift.html" in chat.transcript.value  # sources under the answers
    chat.clear()
    assert chat.history == [] and chat.transcript.value == ""


def test_docbot_ask_streams_the_answer_then_its_sources(settings, sample_collection, capsys):
    from docbot_lib.cli import main

    assert main(["ask", "Why does vLLM need a /dev/shm volume?", "--collection", sample_collection]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Q: Why does vLLM need a /dev/shm volume?\nA: ")
    sources = out.split("\nSources:\n" if "\nSources:\n" in out else "\nRetrieved (not cited):\n")[1]
    assert "openshift-ai-model-serving.md" in sources
    # an answer that cites nothing is flagged, with the passage to read instead
    if "\nRetrieved (not cited):\n" in out:
        assert "\nNote: " in out and "The best-matching passage is [1]" in out, out


def test_prompt_is_the_messages_without_asking_the_model(settings, sample_collection):
    bot = RagChain(
        settings.model_copy(
            update={"llm_model_name": "mistral-7b-instruct", "llm_base_url": "http://127.0.0.1:9/v1"}
        ),  # nothing listens: no model call
        collection=sample_collection,
        k=2,
    )
    question = "Why does vLLM need a /dev/shm volume?"
    messages = bot.prompt(question)
    assert len(messages) == 1 and isinstance(messages[0], HumanMessage)  # Mistral: no system role
    text = messages[0].content
    instructions = settings.rag_instructions or INSTRUCTIONS  # the local stack's small-model prompt, here
    assert text.startswith(instructions) and "\n\nContext:\n[1] " in text and "\n[3] " not in text  # k=2 at most
    assert "shared memory" in text.lower() or "/dev/shm" in text.split("Context:", 1)[1].split("Question:")[0]
    assert text.endswith(f"Question: {question}")
    shown = show_messages(messages)
    assert shown.startswith("──── user ────\n" + instructions)
    assert bot.prompt("What is the best recipe for a chocolate cake?") == []
    with_system = show_messages(build_messages("Q?", "[1] c", [("user", "a"), ("assistant", "b")], True))
    assert [line for line in with_system.splitlines() if line.startswith("────")] == [
        "──── system ────",
        "──── user ────",
        "──── assistant ────",
        "──── user ────",
    ]


def test_fusion_of_the_dense_ranking_alone_keeps_its_order():
    """A question without keywords (or BM25 off) has one ranking for two weights: fused, not an error."""
    from docbot_lib.pipeline.store.ranking import reciprocal_rank_fusion

    fused = reciprocal_rank_fusion([["a", "b", "c"]], [1.0, 0.5])
    assert sorted(fused, key=lambda pk: -fused[pk]) == ["a", "b", "c"]
