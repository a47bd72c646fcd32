# The two entry points of the README:
#   make demo   install, generate + build the mini corpus, train, decode, CER
#   make test   install, lint, run the test suite (what .ci/run runs)
# Every step installs what it needs itself; nothing is assumed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Demo knobs: corpus size and where things go.
MINI_UTTERANCES ?= 3000
MINI_RAW := data/mini_kspon
DATA_DIR := data/tfds
WORKDIR ?= runs/mini
# The language model of shallow fusion (configs/mini_lm.py).
LM_WORKDIR ?= runs/mini_lm
# Three sentences written for the demo (las_jax/data/unseen_sentences.py),
# in none of the corpus's sources and with syllables its train text lacks,
# spoken by espeak-ng after training: speech and text the model never had.
UNSEEN_DIR = $(WORKDIR)/unseen

# glibc malloc settings for XLA on CPU: without them freed buffers go back
# to the kernel every step and page faults cost ~25% of a step here.
FAST_MALLOC := MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \
  MALLOC_ARENA_MAX=1 MALLOC_TOP_PAD_=1073741824

MODEL_DIR ?= models/mini_las

.PHONY: demo test install system-deps browser corpus lint clean

# Debian packages: espeak-ng (the mini corpus's Korean voice), sox, and
# fonts-nanum (Hangul in the attention plots). Installed only when missing.
NANUM := /usr/share/fonts/truetype/nanum/NanumGothic.ttf
system-deps:
	@if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null \
	    || [ ! -f $(NANUM) ]; then \
	  echo "Installing espeak-ng, sox and fonts-nanum (Debian packages)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq espeak-ng sox fonts-nanum >/dev/null || { \
	    echo "Could not install them: run 'apt-get install espeak-ng sox fonts-nanum' as root."; exit 1; }; \
	fi

# Debian's chromium and its driver: the web demo's test drives the page in
# a headless browser (tests/serve_test.py; skipped without them, except in
# CI, where failing to install them fails the run).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "Installing chromium and chromium-driver (Debian packages)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null || { \
	    echo "Could not install them: the web demo test will be skipped ('apt-get install chromium chromium-driver' as root runs it)."; \
	    [ -z "$$CI" ] || exit 1; }; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint browser
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=10

# The generator writes scripts/*.trn last: without them the folder is an
# interrupted run, started again from scratch.
corpus: install
	@if [ ! -f $(MINI_RAW)/scripts/eval_other.trn ]; then \
	  rm -rf $(MINI_RAW) && \
	  $(BIN)/python -m las_jax.data.make_mini_kspon $(MINI_RAW) \
	    --num_utterances=$(MINI_UTTERANCES); \
	else echo "Mini corpus already in $(MINI_RAW)"; fi

# Train (resumes if $(WORKDIR) holds a run; the TFDS dataset is built on the
# first run), train the language model on the corpus's lm_text.txt, decode
# the test splits with joint CTC/attention beam search and shallow fusion
# (eval_clean: text of the train sources; eval_other: tweets, text of a
# source train never read), then the three new sentences.
demo: corpus
	$(FAST_MALLOC) $(BIN)/python train.py --config configs/mini.py --workdir $(WORKDIR)
	$(FAST_MALLOC) $(BIN)/python train.py --config configs/mini_lm.py --workdir $(LM_WORKDIR) \
	  --config.data.vocab_from=$(WORKDIR)
	$(FAST_MALLOC) $(BIN)/python decode.py --workdir $(WORKDIR) --which=best --split=eval_clean \
	  --lm_workdir=$(LM_WORKDIR)
	$(FAST_MALLOC) $(BIN)/python decode.py --workdir $(WORKDIR) --which=best --split=eval_other \
	  --lm_workdir=$(LM_WORKDIR)
	@echo
	@echo "Three sentences written for the demo, spoken by espeak-ng:"
	$(BIN)/python -m las_jax.data.unseen_sentences speak $(UNSEEN_DIR) --corpus=$(MINI_RAW)
	$(FAST_MALLOC) $(BIN)/python decode.py --workdir $(WORKDIR) --which=best \
	  --lm_workdir=$(LM_WORKDIR) $(UNSEEN_DIR)/scripts/unseen.trn --output=$(UNSEEN_DIR)/decode.jsonl
	@echo
	$(BIN)/python -m las_jax.data.unseen_sentences report $(UNSEEN_DIR)/decode.jsonl
	@echo
	@echo "The model as one directory to hand on (Recognizer.from_pretrained):"
	$(BIN)/python -m las_jax.export --workdir $(WORKDIR) --which=best --out $(MODEL_DIR) --overwrite
	@du -sh $(MODEL_DIR)
	@echo
	@echo "Checkpoints:        $(WORKDIR)/checkpoints, $(WORKDIR)/checkpoints_best"
	@echo "Language model:     $(LM_WORKDIR) (decode.py --lm_workdir=$(LM_WORKDIR))"
	@echo "Metrics:            $(WORKDIR)/metrics.jsonl, loss/CER curves in $(WORKDIR)/curves.png"
	@echo "TensorBoard:        $(BIN)/tensorboard --logdir $(WORKDIR)/tensorboard (pip install tensorboard)"
	@echo "Attention plots:    $(WORKDIR)/plots/"
	@echo "Test transcripts:   $(WORKDIR)/decode/, $(UNSEEN_DIR)/decode.jsonl"
	@echo "Corpus statistics:  $(MINI_RAW)/corpus_stats.txt"
	@echo "Exported model:     $(MODEL_DIR) (web demo: $(BIN)/python -m las_jax.serve --model $(MODEL_DIR))"

clean:
	rm -rf $(VENV) data runs models
