import pytest
import torch
import torchcrf

from ner_core.crf import CRF


def pair(num_tags=5, seed=0):
    torch.manual_seed(seed)
    ours = CRF(num_tags, batch_first=True)
    reference = torchcrf.CRF(num_tags, batch_first=True)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def random_batch(batch=7, steps=9, num_tags=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, steps, num_tags, generator=g, requires_grad=True)
    tags = torch.randint(num_tags, (batch, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    return emissions, tags, mask


@pytest.mark.parametrize("seed", range(5))
def test_log_likelihood_and_gradients_match_pytorch_crf(seed):
    ours, reference = pair(seed=seed)
    emissions, tags, mask = random_batch(seed=seed)
    mine = ours(emissions, tags, mask=mask, reduction="none")
    theirs = reference(emissions, tags, mask=mask, reduction="none")
    assert torch.allclose(mine, theirs, atol=1e-5)
    (grad_mine,) = torch.autograd.grad(mine.sum(), emissions)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), emissions)
    assert torch.allclose(grad_mine, grad_theirs, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_paths_match_pytorch_crf(seed):
    ours, reference = pair(num_tags=6, seed=seed)
    emissions, _, mask = random_batch(batch=16, steps=12, num_tags=6, seed=seed)
    with torch.no_grad():
        assert ours.decode(emissions, mask=mask) == reference.decode(emissions, mask=mask)
