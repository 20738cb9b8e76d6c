"""w2strust: weak-to-strong trustworthiness of language models."""

__version__ = "0.1.0"
