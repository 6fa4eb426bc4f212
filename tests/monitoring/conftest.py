"""Fixtures of the monitoring tests (defined in monkit.py, beside the helpers the tests import)."""

from monkit import fleet  # noqa: F401

# tiny_model_dir and shared_data come from tests/conftest.py.
