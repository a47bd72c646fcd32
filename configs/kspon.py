"""KsponSpeech (1000 h) LAS after KoSpeech's configs/model/las.yaml.

  python train.py --config configs/kspon.py --workdir runs/kspon

VGG extractor, 3-layer BiLSTM 512 listener, 2-layer LSTM 1024 speller with
4-head attention, dropout 0.3, and a CTC head trained jointly with weight
0.3 (KoSpeech's joint CTC-attention LAS; its vocabulary of 2000 characters
and label smoothing 0.1 live in the data/train sections).
"""

from configs import default


def get_config():
  """Returns the KsponSpeech LAS configuration."""
  config = default.get_config()
  model = config.model
  model.name = 'las'
  model.extractor = 'vgg'
  model.encoder_rnn_type = 'lstm'
  model.encoder_hidden = 512
  model.encoder_layers = 3
  # One pyramidal pairing before the second BiLSTM: VGG's 40 ms frames
  # become 80 ms (time / 8). Spontaneous Korean runs about 6-8 syllables
  # (characters) per second, 125-170 ms each, ~10 tokens/s with spaces, so
  # 12.5 frames/s still leaves more than one encoder frame per token
  # (which joint CTC needs) while layers 2-3 and every attention step
  # touch half the frames of KoSpeech's plain BiLSTM. A second pairing
  # (160 ms) would drop below one frame per token.
  model.pyramid_layers = (1,)
  model.dropout = 0.3
  # KoSpeech sizes the decoder as 2 * encoder_hidden (the BiLSTM's width).
  model.decoder_hidden = 1024
  model.decoder_layers = 2
  model.attention = 'multi-head'
  model.num_heads = 4
  # Joint CTC-attention training (KoSpeech's joint config: 0.3); decoding
  # then uses one-pass joint CTC/attention beam search (decode.ctc_mode).
  model.ctc_weight = 0.3
  return config
