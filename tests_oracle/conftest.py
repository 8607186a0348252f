"""Oracle tests: our methods' losses against the reference implementations (osrl-lib), run
apart from the default suite (`pytest tests_oracle`); they need osrl-lib and its import-time
dependencies installed (see each test module's docstring)."""

import os

import pytest

os.environ.setdefault("DSRL_SUPPRESS_IMPORT_ERROR", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)
