"""The pipeline: export an artifact, judge it against PyTorch (parity, eval), look inside it (quant-report).

``export`` -> ``parity`` / ``evaluate`` (``eval_shards``: local and Ray) -> ``quant_report``, with the
int8 recipe (``quantize``), the metrics and the bounds they are judged by (``metrics``, ``tolerances``).
Latency is the ``bench`` package; the formats themselves are ``targets``.
"""
