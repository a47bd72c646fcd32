"""DeepSpeech2 + CTC on the embedded mini_kspon corpus, on a 2-core CPU.

  python -m las_jax.data.make_mini_kspon data/mini_kspon
  python train.py --config configs/mini_ds2.py --workdir runs/mini_ds2
  python decode.py --workdir runs/mini_ds2 --which=best --split=eval_clean \
      --lm_workdir runs/mini_lm   # the LAS demo's LM: same vocabulary

KoSpeech's DeepSpeech2 (configs/deepspeech2.py) sized for the corpus and
the machine, as configs/mini.py sizes LAS:
- 40 log-mel bins and 8-channel convs (KoSpeech: 80 bins, 32 channels):
  the two large-kernel convs of the front end cost most of a step on a CPU
  and synthetic speech needs no more (32 channels ran at ~1 s a step);
- both convs strided in time (KoSpeech strides only the first): 40 ms
  frames, as the LAS demo's listener, halve what the recurrent layers run
  over; the corpus speaks ~4 syllables/s, so CTC still gets ~6 frames per
  character;
- 3 x BN-ReLU-BiGRU 128;
- the LAS demo's units (500 SentencePiece pieces over Hangul letters,
  'spm_jamo'), built from the same train text into the same vocabulary,
  so the demo's language model (configs/mini_lm.py) fuses with it.
3000 steps take about 18 minutes on 2 cores (~2.9 steps/s). Test CER
(2026-11-30): eval_clean 18.6% without a language model, 13.4% with the
mini LM at weight 0.7 (dev: 18.8%; 14.5 / 13.0 / 12.8 / 12.7% at weight
0.3 / 0.5 / 0.7 / 0.9).
SpecAugment is off, as in mini.py: the corpus already varies voice, speed,
pitch and noise.
"""

from configs import deepspeech2


def get_config():
  """Returns the mini-corpus DeepSpeech2 configuration."""
  config = deepspeech2.get_config()
  config.data.manual_dir = 'data/mini_kspon'
  config.data.data_dir = 'data/tfds_mini'
  config.data.test_split = 'eval_clean'
  config.data.vocab_unit = 'spm_jamo'
  config.data.vocab_max_size = 500

  config.features.num_mels = 40
  config.features.spec_augment = False

  config.input.batch_size = 16
  config.input.eval_batch_size = 32
  config.input.audio_buckets_s = (3.5, 6.5)
  config.input.token_buckets = (24, 40)

  model = config.model
  model.input_dim = 40
  model.ds2_channels = 8
  model.ds2_time_strides = (2, 2)
  model.encoder_hidden = 128
  model.encoder_layers = 3
  model.dropout = 0.1

  train = config.train
  train.num_steps = 3000
  train.peak_lr = 3e-3
  train.warmup_steps = 100
  train.hold_steps = 1400
  train.decay_steps = 1500
  train.max_grad_norm = 5.0
  train.log_every = 10
  train.eval_every = 250
  train.eval_utterances = 64
  train.checkpoint_every = 250

  # Shallow fusion weight of a language model given with --lm_workdir
  # (chosen on dev; CTC alone trusts the LM more than joint decoding does).
  config.decode.lm_weight = 0.7
  return config
