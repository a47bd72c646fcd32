"""An LSTM language model for the mini demo recognizer (configs/mini.py).

  python train.py --config configs/mini_lm.py --workdir runs/mini_lm \
      --config.data.vocab_from=runs/mini
  python decode.py --workdir runs/mini --lm_workdir runs/mini_lm \
      --split=eval_clean

The mini corpus's train transcripts and its language-model text
(`lm_text.txt`, 30,000 in-domain sentences the recognizer never hears,
written by the corpus generator), tokenized with the recognizer's units;
one LSTM layer of 256 trains in under three minutes on 2 CPU cores. The
train transcripts alone (2,400 sentences the recognizer already learned)
gave an LM that made fusion worse; with the extra text, fusion at the
default weight 0.3 (best of 0.2/0.3/0.4 on dev) lowers test CER.
"""

from configs import mini


def get_config():
  """Returns the mini corpus language model configuration."""
  config = mini.get_config()
  config.data.vocab_from = 'runs/mini'
  config.data.lm_text = 'data/mini_kspon/lm_text.txt'
  model = config.model
  model.name = 'lstm_lm'
  model.lm_hidden = 256
  model.lm_layers = 1
  model.dropout = 0.3

  config.input.batch_size = 64
  config.input.eval_batch_size = 64

  train = config.train
  # About three epochs of the text, under 3 minutes. Fused dev CER of the
  # demo recognizer: 17.8% without LM, 16.8% with 1000 steps, 15.9% with
  # 1500 (dev perplexity 35, still falling).
  train.num_steps = 1500
  train.lr_schedule = 'tri_stage'
  train.peak_lr = 3e-3
  train.warmup_steps = 50
  train.hold_steps = 800
  train.decay_steps = 650
  train.max_grad_norm = 5.0
  train.label_smoothing = 0.0
  train.ctc_warmup_steps = 0
  train.log_every = 50
  train.eval_every = 100
  train.eval_utterances = 0
  train.checkpoint_every = 100
  return config
