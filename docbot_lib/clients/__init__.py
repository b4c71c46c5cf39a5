"""One module per external service (S3, the LLM endpoint, the embeddings, Milvus, Kubernetes): makes its
clients, reconnects them, and turns their failures into docbot_lib errors. Imports only `core`."""
