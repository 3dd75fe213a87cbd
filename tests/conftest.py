import shutil

import pytest
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def has_dot():
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' not installed")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (and the runs are reproducible).
    Module scope, so hypothesis tests can request it; files that want it for every test of
    their own define a function-scoped autouse fixture instead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
