"""Collectors: one module per part of the host; COLLECTORS in registry.py lists them."""
