# dialogsmith: every stage is a make target. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Every stage target runs the one command line: `dialogsmith <stage> ...` (dialogsmith/cli.py).
DS := $(BIN)/dialogsmith
STAMP := $(VENV)/.installed-stamp

# Where the demo and the per-stage targets read and write (override on the command line).
DATA ?= data/demo
DUMPS ?= $(DATA)/sample
OUT ?=
SEED ?= 1234
SAMPLE_COMMENTS ?= 20000
PROFILE ?= default
SPARK_MASTER ?= spark://localhost:7077
JOBS_ARGS ?=
# FORCE=1: a stage may replace its own earlier output even when it holds other files (--force);
# STRICT=1: exit with status 3 when an input file was broken or lines were quarantined (--strict).
FORCE ?=
STRICT ?=
SAFETY_ARGS = $(if $(filter 1 yes true,$(FORCE)),--force) $(if $(filter 1 yes true,$(STRICT)),--strict)

# Paths are passed to the stages single-quoted, so spaces, commas, brackets and $ in them are kept
# as they are: $(call q,$(OUT)) -> 'my out,dir [1]'.
q = '$(subst ','\'',$(1))'

.PHONY: help setup java-check sample extract instances filter dialogpt-tsv tokenize pipeline train chat eval metrics \
        demo test bench lint format dist submit-extract submit-filter submit-tokenize clean

help:
	@echo "make demo    - set up, generate a sample dump, run every stage on it, print a report"
	@echo "make test    - set up and run the test suite"
	@echo "make setup   - create $(VENV) with the package and dev tools (idempotent)"
	@echo "make sample  - synthetic Pushshift-style dumps into DUMPS=$(DUMPS)"
	@echo "make extract DUMPS=<dir> OUT=<dir>   - ingest dumps to Parquet (comments, submissions, quarantine, stats.json)"
	@echo "make instances IN=<extract dir> OUT=<dir> PROFILE=default|dialogpt"
	@echo "make filter IN=<instances dir> OUT=<dir> PROFILE=default|paper|dialogpt"
	@echo "make dialogpt-tsv DUMPS=<dir> OUT=<dir> FLAGS='--min_score 1 ...'  - drop-in for the released extractor"
	@echo "make tokenize IN=<filter dir or DialoGPT TSV> OUT=<dir>"
	@echo "make pipeline DUMPS=<dir> OUT=<dir> [TOKENIZER=gpt2|<dir>]  - extract..tokenize in one Spark session, resumable"
	@echo "make train DATA_DIR=<shards dir> OUT=<dir>"
	@echo "make chat MODEL=<dir>;  make eval MODEL=<dir>;  make metrics HYP=<file> REFS='<file> ...'"
	@echo "make bench | lint | dist | submit-extract | submit-filter | submit-tokenize"
	@echo "make fuzz    - fuzz the C line parser under ASan/UBSan for FUZZ_SECONDS (default 600)"

java-check:
	@if ! command -v java >/dev/null 2>&1; then \
	  echo "Java 17+ is required by pyspark and was not found."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; \
	  exit 1; \
	fi; \
	v=$$(java -version 2>&1 | head -1 | sed -E 's/.*version "([0-9]+).*/\1/'); \
	if [ "$$v" -lt 17 ] 2>/dev/null; then \
	  echo "Java $$v found; pyspark 4 needs Java 17+ (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless)"; \
	  exit 1; \
	fi

$(STAMP): pyproject.toml setup.py src/dialogsmith/_fastjson.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@$(PY) -c "import dialogsmith.fastjson as f; f.AVAILABLE or print('note: the C line parser did not build (no C compiler?); ingest runs on the slower Python line parser')"
	@# the JVM's class-data-sharing archive: Spark sessions start ~2 s faster (dialogsmith/spark.py)
	@SPARK_LOG_LEVEL=ERROR $(PY) -m dialogsmith.spark class-archive >/dev/null 2>&1 || echo "note: no JVM class archive (Spark starts ~2 s slower)"
	@touch $@

setup: java-check $(STAMP)

sample: setup
	$(DS) sample --output $(call q,$(DUMPS)) --seed $(SEED) --comments $(SAMPLE_COMMENTS) $(if $(filter 1 yes true,$(FORCE)),--force)

extract: setup
	@test -n $(call q,$(OUT)) || { echo "usage: make extract DUMPS=<dir> OUT=<dir>"; exit 2; }
	$(DS) extract --input $(call q,$(DUMPS)) --output $(call q,$(OUT)) $(SAFETY_ARGS) $(JOBS_ARGS)

instances: setup
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make instances IN=<extract dir> OUT=<dir> [PROFILE=default|dialogpt]"; exit 2; }
	$(DS) instances --input $(call q,$(IN)) --output $(call q,$(OUT)) --profile $(PROFILE) $(SAFETY_ARGS) $(JOBS_ARGS)

filter: setup
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make filter IN=<instances dir> OUT=<dir> [PROFILE=default|paper|dialogpt]"; exit 2; }
	$(DS) filter --input $(call q,$(IN)) --output $(call q,$(OUT)) --profile $(PROFILE) $(SAFETY_ARGS) $(JOBS_ARGS)

dialogpt-tsv: setup
	@test -n $(call q,$(OUT)) || { echo "usage: make dialogpt-tsv DUMPS=<dir> OUT=<dir> FLAGS='<released extractor flags>'"; exit 2; }
	$(DS) dialogpt-tsv --dumps $(call q,$(DUMPS)) --output $(call q,$(OUT)) $(SAFETY_ARGS) $(FLAGS)

pipeline: setup
	@test -n $(call q,$(OUT)) || { echo "usage: make pipeline DUMPS=<dir> OUT=<dir> [PROFILE=default|dialogpt] [TOKENIZER=gpt2|<dir>] [PIPELINE_ARGS=...]"; exit 2; }
	$(DS) pipeline --input $(call q,$(DUMPS)) --output $(call q,$(OUT)) --profile $(PROFILE) $(if $(TOKENIZER),--tokenizer $(call q,$(TOKENIZER))) $(if $(filter 1 yes true,$(STRICT)),--strict) $(PIPELINE_ARGS)

tokenize: setup
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make tokenize IN=<filter dir> OUT=<dir> [TOKENIZER=gpt2|<dir>]"; exit 2; }
	$(DS) tokenize --input $(call q,$(IN)) --output $(call q,$(OUT)) $(if $(TOKENIZER),--tokenizer $(call q,$(TOKENIZER))) $(SAFETY_ARGS) $(JOBS_ARGS)

train: setup
	@test -n $(call q,$(DATA_DIR)) -a -n $(call q,$(OUT)) || { echo "usage: make train DATA_DIR=<shards dir> OUT=<dir> [TRAIN_ARGS=...]"; exit 2; }
	$(DS) train --input $(call q,$(DATA_DIR)) --output $(call q,$(OUT)) $(TRAIN_ARGS)

chat: setup
	@test -n $(call q,$(MODEL)) || { echo "usage: make chat MODEL=<dir> [CHAT_ARGS=...]"; exit 2; }
	$(DS) chat --model $(call q,$(MODEL)) $(CHAT_ARGS)

metrics: setup
	@test -n $(call q,$(HYP)) -a -n "$(REFS)" || { echo "usage: make metrics HYP=<file> REFS='<file> <file> ...'"; exit 2; }
	$(DS) metrics --hyp $(call q,$(HYP)) --refs $(REFS) $(if $(METEOR_JAR),--meteor-jar $(call q,$(METEOR_JAR)))

eval: setup
	@test -n $(call q,$(MODEL)) || { echo "usage: make eval MODEL=<dir> [EVAL_ARGS=...]"; exit 2; }
	$(DS) eval --model $(call q,$(MODEL)) $(EVAL_ARGS)

demo: setup
	$(DS) demo --data $(call q,$(DATA)) --seed $(SEED) --comments $(SAMPLE_COMMENTS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Sanitized fuzzing of the C line parser; findings are saved to tests/fuzz/regressions (commit them).
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= $(shell date +%s)
.PHONY: fuzz
fuzz: setup
	$(PY) tests/fuzz/fuzz_fastjson.py --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: setup
	$(BIN)/ruff check src tests benchmarks extract filter tokenize train
	$(BIN)/ruff format --check src tests benchmarks extract filter tokenize train

format: setup
	$(BIN)/ruff format src tests benchmarks extract filter tokenize train
	$(BIN)/ruff check --fix src tests benchmarks extract filter tokenize train

dist: setup
	rm -rf dist && $(BIN)/pip wheel -q --no-deps -w dist .

# spark-submit of the stages to SPARK_MASTER with the wheel shipped to executors (docs/cluster.md).
# `python -m dialogsmith.cluster serve` starts a master (spark://localhost:7077) + worker to try them.
# The wheel goes to --py-files under a .zip name (PySpark puts only .zip/.egg on executors' sys.path).
# SUBMIT_PYTHON: the executors' interpreter (default: this venv's; on a real cluster, the nodes' one).
# SUBMIT_ARGS: extra spark-submit flags (--deploy-mode, --conf spark.executor.memory=8g, ...).
.PHONY: submit-instances
SPARK_HOME ?= $(shell $(PY) -m dialogsmith.cluster spark-home 2>/dev/null)
SUBMIT_PYTHON ?= $(abspath $(PY))
SUBMIT_ARGS ?=
SUBMIT_LOG_LEVEL ?= WARN
# SHIP_PACKAGE=0: do not ship the package (executors use the one installed in their environment, e.g. a
# packed venv with the wheel: the zip cannot carry the C line parser, which a zip import cannot load).
SHIP_PACKAGE ?= 1
SPARK_SUBMIT = $(SPARK_HOME)/bin/spark-submit --master $(SPARK_MASTER) \
  $(if $(filter 1,$(SHIP_PACKAGE)),--py-files $$($(PY) -m dialogsmith.cluster package --dist dist)) \
  --conf spark.pyspark.python=$(SUBMIT_PYTHON) --conf spark.pyspark.driver.python=$(abspath $(PY)) \
  --conf spark.log.level=$(SUBMIT_LOG_LEVEL) $(SUBMIT_ARGS)

submit-extract: dist
	@test -n $(call q,$(OUT)) || { echo "usage: make submit-extract DUMPS=<dir> OUT=<dir> [SPARK_MASTER=spark://host:7077]"; exit 2; }
	$(SPARK_SUBMIT) extract/extract.py --input $(call q,$(DUMPS)) --output $(call q,$(OUT)) $(SAFETY_ARGS) $(JOBS_ARGS)

submit-instances: dist
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make submit-instances IN=<extract dir> OUT=<dir> [PROFILE=default|dialogpt]"; exit 2; }
	$(SPARK_SUBMIT) extract/instances.py --input $(call q,$(IN)) --output $(call q,$(OUT)) --profile $(PROFILE) $(SAFETY_ARGS) $(JOBS_ARGS)

submit-filter: dist
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make submit-filter IN=<instances dir> OUT=<dir> [PROFILE=default|paper|dialogpt]"; exit 2; }
	$(SPARK_SUBMIT) filter/filter.py --input $(call q,$(IN)) --output $(call q,$(OUT)) --profile $(PROFILE) $(SAFETY_ARGS) $(JOBS_ARGS)

submit-tokenize: dist
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) || { echo "usage: make submit-tokenize IN=<filter dir> OUT=<dir> [TOKENIZER=gpt2|<dir>]"; exit 2; }
	$(SPARK_SUBMIT) tokenize/tokenize_shards.py --input $(call q,$(IN)) --output $(call q,$(OUT)) $(if $(TOKENIZER),--tokenizer $(call q,$(TOKENIZER))) $(SAFETY_ARGS) $(JOBS_ARGS)

clean:
	rm -rf data/demo dist build .pytest_cache
