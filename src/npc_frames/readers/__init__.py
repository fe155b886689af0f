"""Readers: one raw file format each, no cross-file logic."""
