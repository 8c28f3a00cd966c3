"""perp-keeper: protects leveraged perpetual positions from liquidation."""

__version__ = "0.1.0"
