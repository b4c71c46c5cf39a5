"""Measure the bot: retrieval quality, answer checks, where the time goes, and the GPU's view.

A question set is JSON Lines: {"question", "source", optional "also": [...], "answer", "difficulty"}.
`source` (and each of `also`) names a page as ingested (path relative to the ingested folder, or URL).
Ranks count chunks: hit@k = a chunk from an expected page is among the first k chunks returned;
MRR@10 = mean over questions of 1 / rank of the first such chunk within the first 10 (0 if none).

    questions = load_questions(SAMPLE_QUESTIONS)
    scores = compare_retrieval(settings, questions, {"hybrid": {}, "dense": {"hybrid": False}})
    checks = check_answers(settings, questions[:3], off_topic=["Who won the 1998 World Cup?"])

Answer checks need no judge model: are the cited passages among those retrieved, does the answer cite an
expected page, how much of it is found in the cited text (content-word overlap), does the bot refuse
what the documentation does not cover. With `judge_base_url` set, a judge model scores 1-5 as well.
Plots: docbot_lib.pipeline.evaluate_plots.

The step in ten modules: `questions` (the question set), `scores` (hit@k, MRR@10, medians), `retrieval` (the
runs per setting), `variants` (the collections compared, ingested another way), `checks` (citations, expected
page), `judge` (the optional judge model), `answers` (the answer runs and their report), `tables` (retrieval and
latency tables), `gpu` (vLLM's metrics next to the sizing) and `command` (`docbot eval`).

Layer: pipeline, step `evaluate`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from docbot_lib.pipeline.evaluate.answers import AnswerCheck, AnswerReport, check_answers
from docbot_lib.pipeline.evaluate.checks import citations_valid, cites_expected
from docbot_lib.pipeline.evaluate.command import eval_command
from docbot_lib.pipeline.evaluate.gpu import GpuView, gpu_view
from docbot_lib.pipeline.evaluate.judge import (
    JUDGE_PROMPT,
    JudgeScore,
    judge_answer,
    judge_configured,
    parse_judge_reply,
)
from docbot_lib.pipeline.evaluate.questions import SAMPLE_QUESTIONS, Question, load_questions
from docbot_lib.pipeline.evaluate.retrieval import RetrievalRun, compare_retrieval, retrieve_ranked
from docbot_lib.pipeline.evaluate.scores import (
    LEVELS,
    RetrievalScores,
    difficulty_order,
    first_hit_rank,
    median_ms,
    p95_ms,
    score_retrieval,
)
from docbot_lib.pipeline.evaluate.tables import STAGES, latency_rows, latency_table, retrieval_table
from docbot_lib.pipeline.evaluate.variants import eval_collection, ingest_variant, variant_collection

# support, content words and refusals are measured in rag: the chatbot flags an answer on the same measure
from docbot_lib.pipeline.rag import REFUSAL, STOPWORDS, content_words, is_refusal, support

__all__ = [
    "JUDGE_PROMPT",
    "LEVELS",
    "REFUSAL",
    "SAMPLE_QUESTIONS",
    "STAGES",
    "STOPWORDS",
    "AnswerCheck",
    "AnswerReport",
    "GpuView",
    "JudgeScore",
    "Question",
    "RetrievalRun",
    "RetrievalScores",
    "check_answers",
    "citations_valid",
    "cites_expected",
    "compare_retrieval",
    "content_words",
    "difficulty_order",
    "eval_collection",
    "eval_command",
    "first_hit_rank",
    "gpu_view",
    "ingest_variant",
    "is_refusal",
    "judge_answer",
    "judge_configured",
    "latency_rows",
    "latency_table",
    "load_questions",
    "median_ms",
    "p95_ms",
    "parse_judge_reply",
    "retrieval_table",
    "retrieve_ranked",
    "score_retrieval",
    "support",
    "variant_collection",
]
