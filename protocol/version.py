"""The edgewatch release version, shared by every part."""

__version__ = "0.1.0"
