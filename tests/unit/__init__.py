"""Unit tests: no node, no network."""
