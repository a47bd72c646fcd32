"""The embedded mini_kspon corpus on a 2-core CPU.

  make demo     # or, step by step:
  python -m las_jax.data.make_mini_kspon data/mini_kspon
  python train.py --config configs/mini.py --workdir runs/mini
  python decode.py --workdir runs/mini --which=best --split=eval_clean

A small joint CTC-attention LAS sized for a 2-core CPU: a narrow VGG (16/32
channels; the conv front end dominates CPU time, its cost grows with the
square of the channels), a 3-layer BiLSTM 192 listener with one pyramidal
pairing (80 ms encoder frames, ~8 frames per syllable of this corpus's
speech), a one-layer LSTM 256 speller with 4-head attention, character
vocabulary (the corpus has ~420 syllables; 99.6% of the test characters
occur in train). Utterances are 1.4-6.3 s with at most 31 characters:
two audio buckets x two token buckets = at most four compilations.
"""

from configs import default


def get_config():
  """Returns the mini-corpus configuration."""
  config = default.get_config()
  config.data.manual_dir = 'data/mini_kspon'
  config.data.data_dir = 'data/tfds_mini'
  config.data.test_split = 'eval_clean'

  config.input.batch_size = 32
  config.input.eval_batch_size = 32
  config.input.audio_buckets_s = (3.5, 6.5)
  config.input.token_buckets = (24, 40)

  model = config.model
  model.vgg_channels = (16, 32)
  model.encoder_hidden = 192
  model.encoder_layers = 3
  model.pyramid_layers = (1,)
  model.decoder_hidden = 256
  model.decoder_layers = 1
  model.num_heads = 4
  model.dropout = 0.15
  # Joint CTC-attention: the CTC head speeds up learning the alignment.
  model.ctc_weight = 0.3

  train = config.train
  train.num_steps = 750
  train.peak_lr = 1.5e-3
  train.warmup_steps = 100
  train.hold_steps = 350
  train.decay_steps = 300
  train.teacher_forcing_steps = 600
  train.log_every = 10
  train.eval_every = 250
  train.eval_utterances = 64
  train.checkpoint_every = 250
  return config
