"""The device side: what runs on a board, a phone or a Mac — each artifact's runner, the manifest check,
the latency loop and the logits run that parity judges on the host.

It stands alone: every import here is the standard library, numpy, a runtime (imported when an
artifact loads) or a module of this subpackage, by a relative import. ``bench --device ssh://``
and ``parity --device ssh://`` copy this folder, and only it, to the device and run
``python -m <copy> bench|run|info`` there (``__main__.py``); tests/test_device_side.py runs such a
copy in a clean interpreter holding only numpy and the runtimes, and on the aarch64 board.
"""

PROTOCOL = "mvit-deploy/device/1"  # what a host and a copied device side say to each other (``__main__.py``)
