"""edgefleet: ML inference on fleets of edge devices."""

__all__ = ["__version__"]

__version__ = "0.1.0"
