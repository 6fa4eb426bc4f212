"""Fixtures of the API tests (defined in apistack.py, beside the helpers the tests import)."""

from apistack import hh_file, hh_reference, shared_data, stack, tiny_model_dir  # noqa: F401
