"""InfoSSL: self-supervised and metric learning with mutual-information objectives."""

__version__ = "0.1.0"
