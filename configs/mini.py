"""The embedded mini_kspon corpus on a 2-core CPU (a first version).

  python -m las_jax.data.make_mini_kspon data/mini_kspon
  python train.py --config configs/mini.py --workdir runs/mini

A small LAS: VGG extractor, 2-layer BiLSTM 192 listener with one pyramidal
pairing (80 ms frames), one-layer LSTM 384 speller with 4-head attention,
character vocabulary, batch 16. Utterances are 1.4-6.3 s, ~10 characters
per second: two audio buckets and one token bucket keep it to two
compilations of the step.
"""

from configs import default


def get_config():
  """Returns the mini-corpus configuration."""
  config = default.get_config()
  config.data.manual_dir = 'data/mini_kspon'
  config.data.data_dir = 'data/tfds_mini'

  config.input.batch_size = 16
  config.input.eval_batch_size = 16
  config.input.audio_buckets_s = (3.5, 6.5)
  config.input.token_buckets = (80,)

  model = config.model
  model.encoder_hidden = 192
  model.encoder_layers = 2
  model.pyramid_layers = (1,)
  model.decoder_hidden = 384
  model.decoder_layers = 1
  model.num_heads = 4
  model.dropout = 0.2

  train = config.train
  train.num_steps = 3_000
  train.peak_lr = 1e-3
  train.warmup_steps = 200
  train.hold_steps = 1_000
  train.decay_steps = 1_800
  train.teacher_forcing_steps = 2_000
  train.log_every = 10
  train.eval_every = 100
  train.eval_utterances = 64
  train.checkpoint_every = 100
  return config
