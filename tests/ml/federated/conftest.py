import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # These models are tiny: one intra-op thread is fastest, and far faster than two on shared, busy cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
