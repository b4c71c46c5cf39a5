"""The chat in the notebook: an ipywidgets chat over the RAG chain — streaming answers, sources under each
answer, a collection selector, and clear history. Under papermill (no browser) `ChatUI.ask()` drives the
same widget from code, so a scripted conversation runs the same path a learner clicks through.

Layer: pipeline, step `chat`: imports core, clients, k8s and the steps before it (pipeline.STEPS).
"""

from __future__ import annotations

import html
from collections.abc import Callable

from docbot_lib.core.settings import Settings
from docbot_lib.pipeline.rag import Answer, RagChain


def collections(settings: Settings) -> list[str]:
    """The chunk collections in Milvus (their `_docs` records and probes left out)."""
    from docbot_lib.clients.milvus import milvus_client

    client = milvus_client(settings)
    try:
        names = client.list_collections()
    finally:
        client.close()
    return sorted(n for n in names if not n.endswith(("_docs", "_rbac_probe")))


def sources_html(answer: Answer) -> str:
    shown = answer.sources or answer.retrieved
    label = "Sources" if answer.sources else "Retrieved (not cited)"
    note = (
        (
            f"<div style='margin:6px 0;padding:4px 8px;border-left:3px solid #c77d00;background:#fff6e5'>"
            f"{html.escape(answer.note())}</div>"
        )
        if answer.note()
        else ""
    )
    if not shown:
        return note
    items = "".join(
        f"<li>[{s.number}] <b>{html.escape(s.title)}</b>{' › ' + html.escape(s.section) if s.section else ''} "
        f"<code>{html.escape(s.source)}{f', page {s.page}' if s.page else ''}</code></li>"
        for s in shown
    )
    return f"{note}<div style='font-size:90%;color:#555'>{label}:<ul>{items}</ul></div>"


def side_by_side(rag: Answer, plain: str):
    """An HTML table: the RAG answer with its sources next to the model's answer without context."""
    from IPython.display import HTML

    cell = "vertical-align:top;padding:8px;border:1px solid #ddd;width:50%;white-space:pre-wrap"
    return HTML(
        f"<table style='width:100%'><tr><th>with retrieval (RAG)</th><th>model alone</th></tr>"
        f"<tr><td style='{cell}'>{html.escape(rag.text)}{sources_html(rag)}</td>"
        f"<td style='{cell}'>{html.escape(plain)}</td></tr></table>"
    )


class ChatUI:
    """The chat widget and its state (history, chosen collection)."""

    def __init__(self, settings: Settings, make_bot: Callable[[Settings, str], RagChain] | None = None):
        import ipywidgets as w

        self.settings = settings
        self.make_bot = make_bot or (lambda s, collection: RagChain(s, collection=collection))
        self.history: list[tuple[str, str]] = []
        names = collections(settings) or [settings.milvus_collection]
        default = settings.milvus_collection if settings.milvus_collection in names else names[0]
        self.collection = w.Dropdown(options=names, value=default, description="collection")
        self.transcript = w.HTML()
        # continuous_update=False: the value changes on Enter (or leaving the box), not on every key
        self.question = w.Text(
            placeholder="Ask about the documentation…", layout=w.Layout(width="70%"), continuous_update=False
        )
        self.send = w.Button(description="Ask", button_style="primary")
        self.clear_button = w.Button(description="Clear chat")
        self.send.on_click(lambda _b: self._on_send())
        self.question.observe(lambda _change: self._on_send(), names="value")
        self.clear_button.on_click(lambda _b: self.clear())
        self.collection.observe(lambda _c: self.clear(), names="value")
        self.widget = w.VBox([self.collection, self.transcript, w.HBox([self.question, self.send, self.clear_button])])
        self._turns: list[str] = []
        self._bot: RagChain | None = None

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def bot(self) -> RagChain:
        if self._bot is None or self._bot.retriever.collection != self.collection.value:
            self._bot = self.make_bot(self.settings, self.collection.value)
        return self._bot

    def _render(self, live: str = "") -> None:
        self.transcript.value = "".join(self._turns) + live

    def ask(self, question: str) -> Answer:
        """Ask one question in the conversation: the answer streams into the transcript, its sources under it."""
        user = f"<p><b>You:</b> {html.escape(question)}</p>"
        text = ""
        answer = None
        for piece in self.bot.stream(question, self.history):
            if isinstance(piece, Answer):
                answer = piece
            else:
                text += piece
                self._render(user + f"<p><b>Doc Bot:</b> {html.escape(text)}▌</p>")
        assert answer is not None  # RagChain.stream ends with the Answer
        self._turns.append(user + f"<p><b>Doc Bot:</b> {html.escape(answer.text)}</p>{sources_html(answer)}")
        self._render()
        self.history += [("user", question), ("assistant", answer.text)]
        return answer

    def _on_send(self) -> None:
        question = self.question.value.strip()
        if question:
            self.question.value = ""
            self.ask(question)

    def clear(self) -> None:
        """Forget the conversation (also when another collection is chosen)."""
        self.history.clear()
        self._turns.clear()
        self._render()
