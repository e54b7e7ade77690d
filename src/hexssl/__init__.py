"""hexssl: self-supervised representation learning with HEX (arXiv:2410.23200)."""

__version__ = "0.1.0"
