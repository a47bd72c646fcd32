"""An LSTM language model for the mini demo recognizer (configs/mini.py).

  python train.py --config configs/mini_lm.py --workdir runs/mini_lm \
      --config.data.vocab_from=runs/mini
  python decode.py --workdir runs/mini --lm_workdir runs/mini_lm \
      --split=eval_clean

The mini corpus's train transcripts, tokenized with the recognizer's
units; one LSTM layer of 256 trains in about two minutes on 2 CPU cores.
"""

from configs import mini


def get_config():
  """Returns the mini corpus language model configuration."""
  config = mini.get_config()
  config.data.vocab_from = 'runs/mini'
  model = config.model
  model.name = 'lstm_lm'
  model.lm_hidden = 256
  model.lm_layers = 1
  model.dropout = 0.3

  config.input.batch_size = 64
  config.input.eval_batch_size = 64

  train = config.train
  # Dev perplexity is lowest after about 500 steps (11.0 at step 500 of a
  # 1500-step run on the legal-text corpus; the LM then memorizes).
  train.num_steps = 600
  train.lr_schedule = 'tri_stage'
  train.peak_lr = 3e-3
  train.warmup_steps = 50
  train.hold_steps = 250
  train.decay_steps = 300
  train.max_grad_norm = 5.0
  train.label_smoothing = 0.0
  train.ctc_warmup_steps = 0
  train.log_every = 50
  train.eval_every = 100
  train.eval_utterances = 0
  train.checkpoint_every = 100
  return config
