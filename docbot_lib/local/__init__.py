"""Every process the local stack runs on one machine: the stack itself (`stack`), the Milvus server
(`milvus_server`), the Hugging Face hub stand-in (`hubserver`), the local model server (`model`). Imports any
layer below (core, clients, k8s, pipeline, checks)."""
