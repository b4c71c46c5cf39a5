"""Measuring the bot: the metrics on hand-made cases with known answers, then one run against the local stack
(the real llama.cpp server, Milvus Lite and embedding model) on the sample docs, asserting structure only."""

from __future__ import annotations

import json
import uuid

import pytest

from docbot_lib.core.errors import DocbotError
from docbot_lib.pipeline import evaluate as ev
from docbot_lib.pipeline.evaluate import Question


def q(expected: str, difficulty: str = "", *also: str) -> Question:
    return Question("x", "?", frozenset([expected, *also]), difficulty)


# -- retrieval metrics ---------------------------------------------------------------------------------
def test_hit_at_k_and_mrr_on_a_known_case():
    questions = [q("a", "easy"), q("b", "easy"), q("c", "hard"), q("d", "hard", "e")]
    ranked = [
        ["a", "x", "y"],  # rank 1
        ["x", "y", "b"],  # rank 3
        ["x", "y", "z"],  # no hit
        ["x", "e", "d"],
    ]  # rank 2 (an `also` page counts)
    scores = ev.score_retrieval(questions, ranked)
    assert scores.hit_at[1] == 0.25 and scores.hit_at[2] == 0.5 and scores.hit_at[3] == 0.75
    assert scores.hit_at[10] == 0.75
    assert scores.mrr_at_10 == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert scores.by_difficulty["easy"] == {
        "questions": 2,
        "hit@1": 0.5,
        "hit@4": 1.0,
        "hit@10": 1.0,
        "mrr@10": pytest.approx((1 + 1 / 3) / 2),
    }
    assert scores.by_difficulty["hard"]["hit@4"] == 0.5 and scores.by_difficulty["hard"]["mrr@10"] == 0.25


def test_a_hit_beyond_rank_10_does_not_count():
    scores = ev.score_retrieval([q("a")], [["x"] * 10 + ["a"]])
    assert scores.hit_at[10] == 0.0 and scores.mrr_at_10 == 0.0
    assert ev.first_hit_rank(["x"] * 10 + ["a"], frozenset({"a"})) == 11


def test_load_questions_reads_the_sample_set_and_names_a_bad_line(tmp_path):
    questions = ev.load_questions(ev.SAMPLE_QUESTIONS)
    assert len(questions) >= 8 and all(q.expected and q.difficulty for q in questions)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?", "source": "a.md"}\n{"question": "no source"}\n')
    with pytest.raises(DocbotError, match=r"bad.jsonl, line 2: not a question"):
        ev.load_questions(bad)
    with pytest.raises(DocbotError, match="cannot read the question set"):
        ev.load_questions(tmp_path / "missing.jsonl")


# -- answer checks ---------------------------------------------------------------------------------------
def test_support_is_the_share_of_content_words_found_in_the_cited_text():
    answer = "The docbot_reader role gets Search and Load [1]."
    # content words: docbot_reader, role, gets, search, load -> 4 of 5 in the passage ("gets" is not)
    passage = "Its role docbot_reader has the Search, Query and Load privileges."
    assert ev.content_words(answer) == {"docbot_reader", "role", "gets", "search", "load"}
    assert ev.support(answer, [passage]) == pytest.approx(4 / 5)
    assert ev.support(answer, []) == 0.0
    assert ev.support("[1] the and of", [passage]) == 0.0  # no content words: no support claimed


def test_citation_checks():
    assert ev.citations_valid("See [1] and [2][3].", [1, 2, 3, 4])
    assert not ev.citations_valid("See [1] and [7].", [1, 2, 3, 4])
    assert ev.citations_valid("No citation at all.", [1])
    assert ev.cites_expected(["a.md", "b.md"], {"b.md"})
    assert not ev.cites_expected([], {"b.md"}) and not ev.cites_expected(["a.md"], {"b.md"})


def test_refusals():
    assert ev.is_refusal("I don't know: nothing matches.")
    assert ev.is_refusal("The context does not say; I cannot answer that.")
    assert ev.is_refusal("Anything", found=False)
    assert not ev.is_refusal("Use git stash push -u [1].")


def test_parse_judge_reply():
    assert ev.parse_judge_reply("faithfulness: 4\nrelevance: 5") == ev.JudgeScore(4, 5)
    assert ev.parse_judge_reply("Faithfulness - 2, Relevance = 3.") == ev.JudgeScore(2, 3)
    bad = ev.parse_judge_reply("The answer is good.")
    assert not bad.parsed and bad.detail.startswith("could not parse: The answer is good.")


def test_latency_rows_split_the_total_into_stages():
    check = ev.AnswerCheck(
        "q1",
        "?",
        "a",
        [],
        [],
        [],
        True,
        None,
        0.0,
        0.0,
        False,
        False,
        {"rewrite": 0.0, "retrieve": 0.05, "embed": 0.02, "search": 0.03, "first_token": 0.25, "total": 1.0},
    )
    row = ev.latency_rows(ev.AnswerReport([check]))[0]
    assert row["first token"] == pytest.approx(200) and row["generate"] == pytest.approx(750)
    assert sum(row[s] for s in ev.STAGES) == pytest.approx(row["total"])


def test_compare_retrieval_rejects_an_unknown_setting(settings):
    with pytest.raises(DocbotError, match="unknown setting"):
        ev.compare_retrieval(settings, [q("a")], {"bad": {"hybird": False}})


# -- against the local stack -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_collection(tmp_path_factory, _session_stack):
    from docbot_lib.core.settings import Settings
    from docbot_lib.pipeline.ingest import ingest
    from docbot_lib.pipeline.samples import prepare_sample_docs

    _, env = _session_stack
    settings = Settings.load(**{k.removeprefix("DOCBOT_").lower(): v for k, v in env.items()})
    name = f"eval_{uuid.uuid4().hex[:8]}"
    docs = str(prepare_sample_docs(tmp_path_factory.mktemp("docs")))
    ingest(settings, [docs], collection=name, progress=False)
    return name, docs


def test_measuring_the_bot_on_the_sample_docs(settings, sample_collection, tmp_path, capsys):
    from docbot_lib.pipeline import evaluate_plots

    name, docs = sample_collection
    questions = ev.load_questions(ev.SAMPLE_QUESTIONS)[:3]
    small = f"{name}_c100"
    report = ev.ingest_variant(settings, [docs], small, chunk_tokens=100)
    assert report.new == 4 and report.chunks_written > 0
    runs = ev.compare_retrieval(
        settings,
        questions,
        {"hybrid": {}, "dense": {"hybrid": False}, "chunks 100": {"collection": small}},
        name,
        progress=False,
    )
    assert list(runs) == ["hybrid", "dense", "chunks 100"]
    for run in runs.values():
        assert len(run.ranked) == 3 and all(len(r) == 10 for r in run.ranked)
        assert sorted(run.scores.hit_at) == list(range(1, 11)) and 0 <= run.scores.mrr_at_10 <= 1
        assert all(t > 0 for t in run.embed_s + run.search_s)
    assert "hybrid" in ev.retrieval_table(runs) and "chunks 100" in ev.retrieval_table(runs)

    judged = settings.model_copy(
        update={
            "judge_base_url": settings.llm_base_url,
            "judge_model": settings.llm_model_name,
            "judge_api_key": settings.llm_api_key,
            "max_tokens": 64,
        }
    )
    checks = ev.check_answers(
        judged, questions[:2], name, off_topic=["Who won the 1998 football World Cup?"], progress=False
    )
    assert [c.off_topic for c in checks.checks] == [False, False, True]
    for c in checks.checks[:2]:
        assert c.retrieved and 0 <= c.support <= 1 and isinstance(c.citations_valid, bool)
        assert c.cites_expected is not None and set(c.cited) <= set(c.retrieved)
        assert {"rewrite", "embed", "search", "retrieve", "total"} <= set(c.timings)
        # the 135M model is a poor judge: a score in range, or a clear "could not parse"
        assert c.judge is not None
        assert (
            c.judge.parsed and 1 <= c.judge.faithfulness <= 5 and 1 <= c.judge.relevance <= 5
        ) or c.judge.detail.startswith("could not parse")
    assert checks.checks[2].cites_expected is None and checks.checks[2].judge is None
    summary = checks.summary()
    assert summary["questions"] == 2 and summary["off_topic"] == 1
    assert "median" in ev.latency_table(checks)

    pictures = [
        evaluate_plots.hit_curves(runs, tmp_path / "hit.png"),
        evaluate_plots.by_difficulty(runs, tmp_path / "difficulty.png"),
        evaluate_plots.latency_stack(checks, tmp_path / "latency.png"),
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pictures)

    view = ev.gpu_view(settings)
    assert not view.metrics.is_vllm and "not a vLLM endpoint" in str(view)

    questions_file = tmp_path / "q.jsonl"
    questions_file.write_text(ev.SAMPLE_QUESTIONS.read_text().splitlines()[0] + "\n")
    capsys.readouterr()
    assert ev.eval_command(settings, questions_file, name, as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["retrieval"]) == {"hybrid", "dense"} and out["retrieval"]["dense"]["questions"] == 1
