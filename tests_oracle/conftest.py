"""Oracle tests: our methods' losses against the reference implementations (osrl-lib; the
LSPC authors' code from a checkout named by LSPC_OFFICIAL_HOME; FISOR's official code
through FISOR_HOME and FISOR_PYTHON), run apart from the default suite (`pytest
tests_oracle`); each skips without what it needs (see its module docstring)."""

import os

import pytest

os.environ.setdefault("DSRL_SUPPRESS_IMPORT_ERROR", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)
