"""Tiny sizes for tests: compiles and steps in seconds on a CPU.

python train.py --config configs/tiny.py --workdir /tmp/tiny
"""

from configs import default


def get_config():
  """Returns the tiny test configuration."""
  config = default.get_config()
  model = config.model
  model.encoder_hidden = 16
  model.encoder_layers = 2
  model.pyramid_layers = (1,)
  model.decoder_hidden = 32
  model.decoder_layers = 1
  model.num_heads = 2
  model.dropout = 0.1
  # Tests decode with random parameters, whose CTC heads emit units at
  # random: the no-speech rule (tested where it is set) would refuse them.
  config.decode.no_speech_units_per_second = 0.0
  return config
