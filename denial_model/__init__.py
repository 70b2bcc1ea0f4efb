"""denial-model: predict, explain and prevent claim-line denials for physician-administered drugs."""

__version__ = "0.1.0"
