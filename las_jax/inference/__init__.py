"""Using a trained model: restore it, search, transcribe, report.

- `recognizer`: `Recognizer`, the Python API (load once, transcribe many);
- `batch_search`: an audio batch to n-best arrays (features, encoder,
  search), shared by the recognizer and training's dev evaluation;
- `search`: greedy and beam search under jit, shallow fusion;
- `ctc_prefix_score`: CTC prefix scores for one-pass joint decoding;
- `no_speech`: the rule that refuses inputs without speech (CTC head);
- `restore`: models from a training run's checkpoints;
- `inputs`: files, directories, .trn lists and dataset splits as items;
- `transcription`: what `decode.py` runs (transcripts, JSONL, summary).
"""

__all__ = ['Hypothesis', 'Recognizer']


def __getattr__(name: str):
  # Lazily: training imports `batch_search` without the recognizer's audio
  # readers and input pipeline.
  if name in __all__:
    from las_jax.inference import recognizer  # noqa: PLC0415

    return getattr(recognizer, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
