"""The lab's steps, in the order the notebooks take them; a step imports only steps before it (and the layers
below: core, clients, k8s).

  hub            01  download the model from Hugging Face
  s3             02  upload it to S3, the data connection
  sizing         03  will it fit on a GPU
  serving        03  vLLM on KServe, the InferenceService
  vectordb       04  Milvus day 2: root password, roles, users, least privilege
  milvus_deploy  04  Milvus on the cluster: manifests, Helm patched, Attu
  samples        05  the sample documents
  store          05  the chunk store: schema, writes, hybrid search
  ingest         05  load, chunk, embed, write
  rag            06  the RAG chain with sources
  chat           06  the notebook's chat widget
  api            08  the chatbot's API and web UI
  chatbot_deploy 08  the chatbot on the cluster
  evaluate       07  retrieval and answer checks (evaluate_plots: its pictures)
"""

STEPS = (
    "hub",
    "s3",
    "sizing",
    "serving",
    "vectordb",
    "milvus_deploy",
    "samples",
    "store",
    "ingest",
    "rag",
    "chat",
    "api",
    "chatbot_deploy",
    "evaluate",
    "evaluate_plots",
)
