"""What a run leaves on disk and how it is written: ``evaluation`` (predictions -> ``Evaluation``, the
``metrics.json`` format), ``provenance`` (package versions, machine) and ``io`` (atomic writes, sha256)."""
