"""KsponSpeech DeepSpeech2 + CTC after KoSpeech's configs/model/ds2.yaml.

  python train.py --config configs/deepspeech2.py --workdir runs/ds2

Two strided convs (time / 2), 3 BN-ReLU-BiGRU layers of 1024, CTC output
with blank id 0.
"""

from configs import default


def get_config():
  """Returns the DeepSpeech2 configuration."""
  config = default.get_config()
  model = config.model
  model.name = 'deepspeech2'
  model.extractor = 'ds2'
  model.activation = 'hardtanh'
  model.encoder_rnn_type = 'gru'
  model.encoder_hidden = 1024
  model.encoder_layers = 3
  model.dropout = 0.3
  return config
