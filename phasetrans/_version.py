"""The package version (one place; ``phasetrans.__version__`` and ``phasetrans --version`` read it)."""

__version__ = "0.1.0"
