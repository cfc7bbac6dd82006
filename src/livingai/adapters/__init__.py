"""Adapters between agent frameworks and livingai, built on the public API alone."""
