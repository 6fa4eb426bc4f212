"""rmscore: score conversations with a reward model, at fleet scale.

This package holds only what every role shares: settings, input formats, wire schemas and key
names. It never imports torch; the model lives in `worker/`.
"""

__version__ = "0.1.0"
