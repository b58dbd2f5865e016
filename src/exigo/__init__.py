"""exigo: train an image classifier with DVC, then interrogate what it learned."""

__version__ = "0.1.0"
