"""TxtRayAlign: contrastive alignment of chest X-ray images and report text, as a cached pipeline."""

__version__ = "0.1.0"
