"""An LSTM language model for shallow fusion with a KsponSpeech recognizer.

  python train.py --config configs/kspon.py --workdir runs/kspon
  python train.py --config configs/kspon_lm.py --workdir runs/kspon_lm \
      --config.data.vocab_from=runs/kspon
  python decode.py --workdir runs/kspon --lm_workdir runs/kspon_lm ...

Trains on the normalized transcripts of KsponSpeech's train split (plus
`--config.data.lm_text=extra.txt`, one sentence per line), tokenized with
the recognizer's vocabulary (`data.vocab_from`, required for fusion);
dev perplexity on the dev split. Two LSTM layers of 1024 (ESPnet's RNN LM
for KsponSpeech-sized corpora uses 1-2 layers of 650-1024).
"""

from configs import default


def get_config():
  """Returns the KsponSpeech language model configuration."""
  config = default.get_config()
  config.data.vocab_from = 'runs/kspon'
  model = config.model
  model.name = 'lstm_lm'
  model.lm_hidden = 1024
  model.lm_layers = 2
  model.dropout = 0.2

  # Sentences of up to 256 units; 128 sentences a step.
  config.input.batch_size = 128
  config.input.eval_batch_size = 128
  config.input.token_buckets = (32, 64, 128, 256)

  train = config.train
  train.num_steps = 100_000
  train.lr_schedule = 'tri_stage'
  train.peak_lr = 1e-3
  train.warmup_steps = 1_000
  train.hold_steps = 40_000
  train.decay_steps = 59_000
  train.max_grad_norm = 5.0
  train.label_smoothing = 0.0
  train.eval_every = 5_000
  train.eval_utterances = 0
  train.checkpoint_every = 5_000
  return config
