"""Fixtures of the API tests (defined in apistack.py, beside the helpers the tests import)."""

from apistack import hh_file, hh_reference, stack  # noqa: F401

# tiny_model_dir and shared_data come from tests/conftest.py.
