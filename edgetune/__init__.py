"""edgetune: distill, tune, export, quantize and benchmark transformer classifiers for edge targets.

`edgetune.build(target, ...)` runs the whole pipeline and returns the typed report (edgetune/api.py).
"""

__version__ = "0.1.0"


def build(target, **options):
    """Build the bundle for `target` and return its report; see edgetune.api.build for the options."""
    from edgetune.api import build as build_bundle  # torch and friends load only when a build runs

    return build_bundle(target, **options)
