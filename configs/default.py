"""Default configuration: every knob of las_jax, one comment each.

Variant configs (`kspon.py`, `mini.py`, `deepspeech2.py`, `tiny.py`) import
this file and override fields. Any field can be overridden on the command
line: `python train.py --config configs/kspon.py --config.input.batch_size=64`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  config = ml_collections.ConfigDict()

  # Seed for parameter init, dropout, SpecAugment and data shuffling.
  config.seed = 0

  # ----------------------------------------------------------------- data --
  config.data = data = ml_collections.ConfigDict()
  # TFDS builder name: 'ksponspeech' (also builds mini_kspon) or 'manifest'.
  data.dataset = 'ksponspeech'
  # TFDS builder config: 'phonetic' (KoSpeech default), 'spelling' (ESPnet)
  # or, for 'manifest' only, 'none' (transcripts as written).
  data.transcription = 'phonetic'
  # Where TFDS writes/reads prepared datasets (one per corpus for manifest).
  data.data_dir = 'data/tfds'
  # Corpus: KsponSpeech_0N/ + scripts/*.trn, or <split>.tsv/.jsonl lists.
  data.manual_dir = 'data/KsponSpeech'
  # Split used for training.
  data.train_split = 'train'
  # Split used for evaluation during training.
  data.dev_split = 'dev'
  # Split used for the final test.
  data.test_split = 'eval_clean'
  # Output units of the vocabulary built from the train transcripts: 'char'
  # (KoSpeech), 'jamo' (Hangul letters: spell any syllable), or SentencePiece
  # unigram subwords over either, 'spm_char' / 'spm_jamo' (trained on the
  # train words when the run starts, saved in the run's vocab.txt).
  data.vocab_unit = 'char'
  # Vocabulary size cap, specials and space included (KoSpeech: 2000); the
  # rarest units become <unk>. None = keep every unit. For 'spm_*' the
  # model's size, required, at least the train text's distinct characters
  # (or jamo) + 5.
  data.vocab_max_size = 2000
  # A run directory whose vocab.txt this run uses instead of building one
  # from the train transcripts: a language model for shallow fusion must
  # share its recognizer's units. '' = build from the train split.
  data.vocab_from = ''
  # Language model runs only: a UTF-8 text file of extra training
  # sentences, one per line (normalized as transcripts are), read besides
  # the train split's transcripts. '' = none.
  data.lm_text = ''

  # -------------------------------------------------- input (pipeline) --
  config.input = inp = ml_collections.ConfigDict()
  # Global batch size (all hosts together; each host gets batch_size / hosts).
  inp.batch_size = 32
  # Global batch size for evaluation and dataset decoding.
  inp.eval_batch_size = 32
  # Padded audio lengths in seconds: one bucket per entry; longer training
  # utterances are dropped (and counted), longer eval ones get an extra bucket.
  inp.audio_buckets_s = (2.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0)
  # Padded target lengths in tokens (EOS included), same rules as above.
  inp.token_buckets = (32, 64, 128, 256)
  # Trim leading/trailing silence before bucketing (audio.trim_bounds:
  # KoSpeech's top_db rule, but never interior pauses or quiet speech);
  # False = whole files. The datasets store the trim spans.
  inp.trim_silence = True
  # Silence threshold in dB below peak for trimming (KoSpeech: 30). The
  # datasets store spans for 30; another value reads all audio once per run.
  inp.trim_top_db = 30
  # Worker processes loading batches (grain mp_prefetch); 0 = in-process.
  inp.num_workers = 0
  # Threads reading and collating batches in each process; 0 = synchronous.
  inp.num_threads = 2
  # Batches buffered ahead by the reader threads.
  inp.prefetch_buffer_size = 4

  # ------------------------------------------------------------ features --
  config.features = feats = ml_collections.ConfigDict()
  # Audio sample rate in Hz (all corpora are resampled to it).
  feats.sample_rate = 16000
  # Mel bins (KoSpeech: 80).
  feats.num_mels = 80
  # STFT window length in ms: n_fft = sample_rate * ms / 1000 (20 ms = 320).
  feats.frame_length_ms = 20
  # STFT hop in ms (10 ms = 160 samples).
  feats.frame_shift_ms = 10
  # STFT window (librosa/scipy name); 'hann' as librosa's melspectrogram.
  feats.window = 'hann'
  # Lowest mel filter edge in Hz.
  feats.fmin = 0.0
  # Highest mel filter edge in Hz; None = sample_rate / 2.
  feats.fmax = None
  # Power floor before the log (librosa power_to_db amin).
  feats.amin = 1e-10
  # Dynamic range kept below each utterance's peak, in dB; 0 = unclipped.
  feats.top_db = 80.0
  # Normalization: 'utterance' (KoSpeech), 'channel' (per bin) or 'none'.
  feats.normalize = 'utterance'
  # Reverse each utterance's frames in time (KoSpeech input_reverse).
  feats.input_reverse = False
  # Apply SpecAugment in training.
  feats.spec_augment = True
  # SpecAugment: frequency mask widths are drawn in [0, freq_mask_param).
  feats.freq_mask_param = 18
  # SpecAugment: frequency masks per utterance.
  feats.num_freq_masks = 2
  # SpecAugment: time masks per utterance.
  feats.num_time_masks = 4
  # SpecAugment: time mask widths in [0, ratio * utterance frames) (1/20).
  feats.time_mask_ratio = 0.05
  # Probability that a training utterance gets noise mixed in; 0 = off.
  feats.noise_prob = 0.0
  # Lowest SNR in dB of mixed-in noise.
  feats.noise_snr_db_min = 5.0
  # Highest SNR in dB of mixed-in noise.
  feats.noise_snr_db_max = 30.0

  # --------------------------------------------------------------- model --
  config.model = model = ml_collections.ConfigDict()
  # Model family: 'las' (attention encoder-decoder), 'deepspeech2' (CTC) or
  # 'lstm_lm' (a language model over a recognizer's units, for fusion).
  model.name = 'las'
  # Feature bins per frame fed to the extractor: always features.num_mels
  # (a reference to it; setting either sets both).
  model.input_dim = feats.get_ref('num_mels')
  # Conv front end: 'vgg' (time / 4, KoSpeech LAS) or 'ds2' (time / 2 by
  # default, see ds2_time_strides).
  model.extractor = 'vgg'
  # VGG conv channels (first block, second block); KoSpeech: (64, 128).
  model.vgg_channels = (64, 128)
  # DeepSpeech2 extractor: channels of both convs (KoSpeech: 32).
  model.ds2_channels = 32
  # DeepSpeech2 extractor: the two convs' strides along time; KoSpeech's
  # (2, 1) gives 20 ms frames, (2, 2) 40 ms (DeepSpeech2 paper, sec. 3.6).
  model.ds2_time_strides = (2, 1)
  # Extractor activation: hardtanh (clip 0..20), relu, elu, leaky_relu,
  # gelu or swish (KoSpeech's --activation).
  model.activation = 'hardtanh'
  # Encoder RNN cell: 'lstm', 'gru' or 'rnn' (KoSpeech's --rnn_type).
  model.encoder_rnn_type = 'lstm'
  # Encoder RNN hidden size per direction.
  model.encoder_hidden = 256
  # Number of encoder RNN layers.
  model.encoder_layers = 3
  # Bidirectional encoder RNN (output width 2 * encoder_hidden).
  model.bidirectional = True
  # Encoder layers (0-based) whose input frames are paired, halving time
  # (pBLSTM); () = plain BiLSTM as in KoSpeech.
  model.pyramid_layers = ()
  # Dropout between RNN layers and on decoder inputs.
  model.dropout = 0.3
  # Decoder LSTM hidden size (KoSpeech: 2 * encoder_hidden).
  model.decoder_hidden = 512
  # Number of decoder LSTM layers.
  model.decoder_layers = 2
  # Attention: 'multi-head' (KoSpeech default), 'location' or 'additive'.
  model.attention = 'multi-head'
  # Heads of multi-head attention.
  model.num_heads = 4
  # Feed the previous context into the decoder LSTM (ESPnet); KoSpeech: no.
  model.input_feeding = False
  # Joint CTC-attention loss weight; > 0 adds a CTC head (blank id 0) on
  # the listener (KoSpeech's joint config: 0.3). DeepSpeech2 ignores it.
  model.ctc_weight = 0.0
  # Language model ('lstm_lm') only: width of its embedding and LSTM layers.
  model.lm_hidden = 512
  # Language model ('lstm_lm') only: number of LSTM layers.
  model.lm_layers = 2

  # --------------------------------------------------------------- train --
  config.train = train = ml_collections.ConfigDict()
  # Total optimizer steps (a resumed run continues up to this step).
  train.num_steps = 200_000
  # Devices in the `data` mesh; 0 = all (must be 0 in multi-host runs).
  train.num_devices = 0
  # Call jax.distributed.initialize() with cluster auto-detection (TPU pods,
  # SLURM...); JAX_COORDINATOR_ADDRESS in the environment also triggers it.
  train.distributed = False
  # Learning-rate schedule: 'tri_stage' (KoSpeech), 'transformer' (Noam) or
  # 'constant'.
  train.lr_schedule = 'tri_stage'
  # Peak learning rate (KoSpeech: 1e-4).
  train.peak_lr = 1e-4
  # tri_stage: starting learning rate as a fraction of peak_lr.
  train.init_lr_scale = 0.01
  # tri_stage: final learning rate as a fraction of peak_lr.
  train.final_lr_scale = 0.05
  # Linear warm-up steps (KoSpeech: 400).
  train.warmup_steps = 400
  # tri_stage: steps the peak is held after warm-up.
  train.hold_steps = 40_000
  # tri_stage: steps of exponential decay to final_lr_scale * peak_lr.
  train.decay_steps = 80_000
  # Gradients are clipped to this global norm (KoSpeech max_grad_norm: 400).
  train.max_grad_norm = 400.0
  # Adam beta1.
  train.adam_b1 = 0.9
  # Adam beta2.
  train.adam_b2 = 0.999
  # Adam epsilon.
  train.adam_eps = 1e-8
  # Decoupled weight decay (AdamW); 0 = plain Adam.
  train.weight_decay = 0.0
  # Dtype of matmuls and convolutions: 'float32' or 'bfloat16' (mixed
  # precision: parameters, optimizer state, gradients, LSTM cell states,
  # softmax/attention weights, log-mel, CTC and losses stay float32).
  train.compute_dtype = 'float32'
  # Micro-batches per optimizer step: each device's share of the batch is
  # split into this many, run one after another inside the jitted step
  # (lax.scan) with their gradients summed, so activation memory is that
  # of batch_size / grad_accum_steps. Must divide the per-device batch.
  train.grad_accum_steps = 1
  # Rematerialization of the extractor's conv blocks and the listener's RNN
  # layers (jax.checkpoint): 'none', or the name of the jax.checkpoint_policies
  # policy for what each block keeps: 'nothing_saveable' (least memory),
  # 'dots_saveable' or 'dots_with_no_batch_dims_saveable'.
  train.remat = 'none'
  # Label smoothing of the attention cross entropy (KoSpeech: 0.1).
  train.label_smoothing = 0.1
  # Joint CTC-attention only: the first steps train the CTC loss alone, so
  # the listener learns frame-level features before the speller starts
  # (on small corpora the speller otherwise learns to read a memorized
  # whole-utterance summary off the first frame and attention never
  # aligns). 0 = joint loss from the start.
  train.ctc_warmup_steps = 0
  # Scheduled sampling: what one draw decides. 'batch' (KoSpeech): a whole
  # batch is fed the ground truth with probability teacher_forcing_ratio,
  # else its own predictions (teacher-forced batches run in parallel over
  # time with content-based attention: faster); 'token' (Bengio et al.
  # 2015): each token independently.
  train.scheduled_sampling = 'batch'
  # Scheduled sampling: probability of feeding the ground truth at step 0.
  train.teacher_forcing_ratio = 1.0
  # Scheduled sampling: floor the probability decays to.
  train.min_teacher_forcing_ratio = 0.9
  # Scheduled sampling: steps of the linear decay to the floor (0 = never).
  train.teacher_forcing_steps = 100_000
  # Log training metrics every this many steps.
  train.log_every = 50
  # Evaluate on the dev split every this many steps (0 = only at the end).
  train.eval_every = 2_000
  # Dev utterances used per evaluation (loss and greedy CER); 0 = all.
  train.eval_utterances = 1_000
  # Dev utterances whose attention alignments are plotted per evaluation.
  train.plot_utterances = 3
  # Save a checkpoint every this many steps (also at the end and on SIGTERM).
  train.checkpoint_every = 2_000
  # Latest checkpoints kept (the best-dev-CER one is kept separately).
  train.keep_checkpoints = 3
  # Write checkpoints in a background thread.
  train.async_checkpointing = True
  # Show a tqdm progress bar on process 0.
  train.progress_bar = True

  # -------------------------------------------------------------- decode --
  config.decode = decode = ml_collections.ConfigDict()
  # Beam width of `decode.py` and `Recognizer`; 1 = greedy search.
  decode.beam_size = 5
  # Utterances decoded together; a partial batch takes the next power of
  # two rows (so few batch shapes are compiled).
  decode.batch_size = 16
  # Length penalty exponent alpha of beam search (0 = raw log-probability).
  decode.length_penalty = 0.6
  # Length penalty form: 'gnmt' ((5 + len) / 6) ** alpha or 'length'.
  decode.length_norm = 'gnmt'
  # How LAS uses its CTC head: 'joint' (one-pass joint CTC/attention beam
  # search: CTC prefix scores of a pre-beam of candidates at every step,
  # Watanabe et al. 2017), 'rescore' (attention beam search, then the
  # n-best rescored with CTC), 'ctc' (the CTC head alone: best path, or
  # prefix beam search with beam_size > 1; with a language model, a
  # label-synchronous search of CTC prefix scores fused with the LM) or
  # 'off' (attention alone).
  # None = 'joint' with a CTC head, 'off' without. DeepSpeech2: 'ctc'.
  decode.ctc_mode = None
  # CTC weight lambda of 'joint' and 'rescore': scores are (1 - lambda) *
  # attention + lambda * CTC; None = the run's model.ctc_weight.
  decode.ctc_weight = None
  # 'joint': candidates CTC-scored per hypothesis and step, the best
  # ceil(ratio * beam_size) by attention (+ LM) score (ESPnet: 1.5).
  decode.ctc_prebeam_ratio = 1.5
  # Shallow fusion: the run directory of a language model trained by
  # train.py (configs/kspon_lm.py) on this model's vocabulary; '' = none.
  decode.lm_workdir = ''
  # Shallow fusion: weight of the language model's log-probabilities.
  decode.lm_weight = 0.3
  # Added to a hypothesis' score per emitted token, EOS included (ESPnet's
  # length_bonus); counters the search's preference for short outputs.
  decode.length_bonus = 0.0
  # LAS token limit per utterance: this rate times its seconds of audio,
  # plus 1 for EOS; 0 = the largest input.token_buckets entry. Fast Korean
  # speech is ~10 syllables/s, ~25 jamo/s.
  decode.max_tokens_per_second = 30.0
  # Dtype of matmuls and convolutions in decoding ('float32' or
  # 'bfloat16'); None = the run's train.compute_dtype.
  decode.compute_dtype = None
  # No-speech rule (las_jax/inference/no_speech.py): an input whose CTC
  # best path emits fewer confident units than this (each unit counted by
  # its peak posterior) in every second of it (in all of it when shorter)
  # is skipped by name as holding no speech instead of decoded into
  # invented text, unless it is a short reply (next field); 0 = off. Needs
  # a CTC head (DeepSpeech2, or LAS with model.ctc_weight > 0). Demo model
  # (no_speech.py's figures): noise, tones, hum, clicks, chords and a
  # melody at most 2.75 (3.55 for 1 in 220 noise draws); every eval
  # utterance and espeak-ng sentence at 10 dB SNR 4.27 or more.
  decode.no_speech_units_per_second = 3.0
  # Fewer confident units are speech too when they add up to this and the
  # transcript is what the CTC head hears (a short reply: '네', '아니요').
  # Demo model: non-speech whose transcript the head hears, at most 0.72
  # (hum heard as '음'); README gives the short words kept.
  decode.no_speech_short_units = 0.75

  return config
