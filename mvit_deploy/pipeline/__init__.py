"""The pipeline: export an artifact, judge it against PyTorch (parity, eval), look inside it (quant-report).

``export`` -> ``parity`` / ``evaluate`` (``eval_shards``: local and Ray) -> ``quant_report``; ``predict``
classifies one image. The metrics and the bounds they are judged by are the package's own tables
(``mvit_deploy.metrics``, ``mvit_deploy.tolerances``); latency is ``bench``; the formats are ``targets``.
"""
