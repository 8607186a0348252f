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


@pytest.fixture
def float64():
    """Both implementations built and trained in float64. In fp32 two correct computations
    of the same update round differently, and a few weights part after some steps: a ReLU
    whose input is within rounding of 0 is on in one and off in the other, and Adam turns the
    last bits of a gradient element near 0 into a step of up to its learning rate, either
    way (CPQ, measured: after 3 steps, one hidden unit of one critic, 74 weights, up to 1.5e-4
    apart while every loss agreed to 1e-5). In float64 those coincidences are rare enough
    that every weight can be held to the reference, step after step."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)
