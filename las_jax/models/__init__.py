"""Models: LAS (listen, attend and spell), DeepSpeech2, an LSTM LM.

`build_model(config.model, vocab_size, rngs)` picks one by
`config.model.name`. CTC heads (DeepSpeech2, joint CTC-attention LAS) use
blank id 0 (= Vocabulary.PAD_ID).
"""

import jax
import ml_collections
from flax import nnx

from las_jax.models.deepspeech2 import DeepSpeech2
from las_jax.models.las import LAS
from las_jax.models.listener import Encoded
from las_jax.models.lstm_lm import LSTMLM

# CTC blank: the padding id, never a target token.
CTC_BLANK_ID = 0

__all__ = [
  'CTC_BLANK_ID',
  'LAS',
  'LSTMLM',
  'DeepSpeech2',
  'Encoded',
  'build_model',
  'count_params',
  'encoder_lengths',
]


def build_model(
  model_config: ml_collections.ConfigDict, vocab_size: int, rngs: nnx.Rngs
) -> LAS | DeepSpeech2 | LSTMLM:
  """Builds the model named by `model_config.name` ('las', 'deepspeech2' or
  'lstm_lm')."""
  if vocab_size < 4:
    raise ValueError(
      f'vocab_size must be >= 4 (pad/sos/eos/unk), got {vocab_size}'
    )
  if model_config.name == 'las':
    return LAS(model_config, vocab_size, rngs=rngs)
  if model_config.name == 'deepspeech2':
    return DeepSpeech2(model_config, vocab_size, rngs=rngs)
  if model_config.name == 'lstm_lm':
    return LSTMLM(model_config, vocab_size, rngs=rngs)
  raise ValueError(
    f'config.model.name: unknown model {model_config.name!r}; expected '
    "'las', 'deepspeech2' or 'lstm_lm'"
  )


def count_params(model: nnx.Module) -> int:
  """Number of trainable parameters (nnx.Param leaves; no BN statistics)."""
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  return sum(int(x.size) for x in leaves)


def encoder_lengths(model_config: ml_collections.ConfigDict, frame_lengths):
  """Encoder output frames for `frame_lengths` log-mel frames.

  What the models compute inside `encode`, without running them: the
  extractor's reduction (VGG: two 2x max-pools, `(T // 2) // 2`; DS2: a
  stride-2 conv, `ceil(T / 2)`), then one halving (floor) per pyramid layer
  of a LAS listener.

  Args:
    model_config: `config.model`.
    frame_lengths: an int or integer array of feature frame counts.

  Returns:
    The encoder frame counts, same type.
  """
  t = frame_lengths
  if model_config.extractor == 'vgg':
    t = (t // 2) // 2
  else:
    t = (t + 1) // 2
  if model_config.name == 'las':
    for _ in model_config.pyramid_layers:
      t = t // 2
  return t
