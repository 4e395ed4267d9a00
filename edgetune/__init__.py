"""edgetune: distill, tune, export, quantize and benchmark transformer classifiers for edge targets."""

__version__ = "0.1.0"
