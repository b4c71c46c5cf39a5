"""Doc Bot: a retrieval-augmented chatbot over documentation, the way it runs on OpenShift AI.

Pipeline, one module a stage: hub -> s3 -> serving; documents -> ingest -> vectordb -> rag -> chat/api.
`settings` holds every knob; `local` runs the whole stack on one machine; `checks` tells what answers.
"""

from docbot_lib.errors import DocbotError, ServiceUnavailable
from docbot_lib.settings import Settings

__all__ = ["DocbotError", "ServiceUnavailable", "Settings"]
__version__ = "0.1.0"
