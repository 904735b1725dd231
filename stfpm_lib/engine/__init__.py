"""Running the method: ``training`` (``fit``: SGD loop, model selection, resume), ``checkpoint`` (the
``checkpoint.pt`` / ``last.pt`` format, ``load_checkpoint``), ``inference`` (``predict`` to a ``.npz``),
``device`` (device, precision, kernels, RNG state) and ``feature_cache`` (teacher features kept in memory)."""
