"""edgeport: convert one trained detector to every edge format and run any of them lightly."""

__version__ = "0.1.0"
