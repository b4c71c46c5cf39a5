"""Doc Bot: a retrieval-augmented chatbot over documentation, the way it runs on OpenShift AI.

The package is in layers, each a folder; a module imports only from the layers below its own
(tests/test_layers.py holds that, lazy imports included):

  core/      settings, errors, names                     what everything else reads; imports nothing above
  clients/   one module per external service: S3, the LLM endpoint, the embeddings, Milvus, Kubernetes;
             each makes (and reconnects) its clients and turns their failures into docbot_lib errors
  k8s/       manifests (render, validate offline, apply) and openshift (patches for helm's output)
  pipeline/  the lab's steps in order (pipeline.STEPS): hub -> s3 -> serving -> Milvus -> ingest -> rag -> api,
             each step importing only earlier ones
  checks     does each service answer (notebook 00, `docbot check`, the local stack's readiness)
  local/     every local process: the local stack, the Milvus server, the hub stand-in, the local model server
  lab, workshop, cli   the administrator's class tools, the notebook runner, the command line (the top)

Notebooks, the CLI and the chatbot API call the same functions.
"""

from docbot_lib.core.errors import DocbotError, ServiceUnavailable
from docbot_lib.core.settings import Settings

# bottom to top; the top-level modules are named by themselves
LAYERS = ("core", "clients", "k8s", "pipeline", "checks", "local", "lab", "workshop", "cli")

__all__ = ["LAYERS", "DocbotError", "ServiceUnavailable", "Settings"]
__version__ = "0.1.0"
