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
# A sentence in none of the corpus's sources (konlpy's kolaw/kobill),
# spoken by espeak-ng after training: speech the model has never heard.
UNSEEN_TEXT := 국민의 권리와 의무는 법률로 정한다

# glibc malloc settings for XLA on CPU: without them freed buffers go back
# to the kernel every step and page faults cost ~25% of a step here.
FAST_MALLOC := MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \
  MALLOC_ARENA_MAX=1 MALLOC_TOP_PAD_=1073741824

.PHONY: demo test install system-deps corpus lint clean

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

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n 2 --durations=10

# The generator writes scripts/*.trn last: without them the folder is an
# interrupted run, started again from scratch.
corpus: install
	@if [ ! -f $(MINI_RAW)/scripts/eval_other.trn ]; then \
	  rm -rf $(MINI_RAW) && \
	  $(BIN)/python -m las_jax.data.make_mini_kspon $(MINI_RAW) \
	    --num_utterances=$(MINI_UTTERANCES); \
	else echo "Mini corpus already in $(MINI_RAW)"; fi

# Train (resumes if $(WORKDIR) holds a run; the TFDS dataset is built on the
# first run), decode the test split with beam search, then a new sentence.
demo: corpus
	$(FAST_MALLOC) $(BIN)/python train.py --config configs/mini.py --workdir $(WORKDIR)
	$(FAST_MALLOC) $(BIN)/python decode.py --workdir $(WORKDIR) --which=best --split=eval_clean
	@echo
	@echo "A sentence outside the corpus ($(UNSEEN_TEXT)), spoken by espeak-ng:"
	espeak-ng -v ko -w $(WORKDIR)/unseen.wav "$(UNSEEN_TEXT)"
	$(FAST_MALLOC) $(BIN)/python decode.py --workdir $(WORKDIR) --which=best $(WORKDIR)/unseen.wav
	@echo
	@echo "Checkpoints:        $(WORKDIR)/checkpoints, $(WORKDIR)/checkpoints_best"
	@echo "Metrics:            $(WORKDIR)/metrics.jsonl, loss/CER curves in $(WORKDIR)/curves.png"
	@echo "TensorBoard:        $(BIN)/tensorboard --logdir $(WORKDIR)/tensorboard (pip install tensorboard)"
	@echo "Attention plots:    $(WORKDIR)/plots/"
	@echo "Test transcripts:   $(WORKDIR)/decode/"

clean:
	rm -rf $(VENV) data runs
