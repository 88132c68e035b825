import itertools
import random

import pytest
import torch
import torchcrf

from ner_core.config import TrainConfig
from ner_core.crf import CRF, LIKELIHOOD_FORBIDDEN
from ner_core.data import EncodedSplit, load_corpus
from ner_core.model import BiLSTMCRF, Ensemble, with_entity_bias
from ner_core.synthetic import make_corpus
from ner_core.tags import TagSet, allowed_transitions, invalid_transitions
from ner_core.train import fit, predict_ids

# Both ways of running the forward algorithm and Viterbi: loops over time (the CPU's) and trees of
# matrix products (the GPU's); every test that takes ``scan`` checks both on the CPU.
BOTH = pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])


def pair(num_tags=5, seed=0, scan=False):
    torch.manual_seed(seed)
    ours = CRF(num_tags, batch_first=True)
    ours.scan = scan
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


@BOTH
@pytest.mark.parametrize("seed", range(5))
def test_log_likelihood_and_gradients_match_pytorch_crf(seed, scan):
    ours, reference = pair(seed=seed, scan=scan)
    emissions, tags, mask = random_batch(seed=seed)
    mine = ours(emissions, tags, mask=mask, reduction="none")
    theirs = reference(emissions, tags, mask=mask, reduction="none")
    assert torch.allclose(mine, theirs, atol=1e-5)
    (grad_mine,) = torch.autograd.grad(mine.sum(), emissions)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), emissions)
    assert torch.allclose(grad_mine, grad_theirs, atol=1e-5)


@BOTH
@pytest.mark.parametrize("seed", range(5))
def test_viterbi_paths_match_pytorch_crf(seed, scan):
    ours, reference = pair(num_tags=6, seed=seed, scan=scan)
    emissions, _, mask = random_batch(batch=16, steps=12, num_tags=6, seed=seed)
    with torch.no_grad():
        assert ours.decode(emissions, mask=mask) == reference.decode(emissions, mask=mask)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8, 9, 17, 33])
def test_the_trees_equal_the_loops_at_every_length(steps):
    """Lengths around powers of two, padding of every size: log Z, its gradient and the best paths."""
    loop = tempted(BIOES, seed=steps, scale=1.0)
    tree = tempted(BIOES, seed=steps, scale=1.0, scan=True)
    emissions, tags, mask = random_batch(batch=12, steps=steps, num_tags=len(BIOES), seed=steps)
    results = []
    for crf in (loop, tree):
        llh = crf(emissions, tags, mask=mask, reduction="none")
        (grad,) = torch.autograd.grad(llh.sum(), emissions)
        with torch.no_grad():
            results.append((llh, grad, crf.decode(emissions * 5, mask=mask)))
    (llh_loop, grad_loop, paths_loop), (llh_tree, grad_tree, paths_tree) = results
    assert torch.allclose(llh_loop, llh_tree, atol=1e-4)
    assert torch.isfinite(grad_tree).all() and torch.allclose(grad_loop, grad_tree, atol=1e-5)
    assert paths_loop == paths_tree


# --- the scheme's constraint -------------------------------------------------------------

BIO = TagSet("BIO", ("O", "B-A", "I-A", "B-B", "I-B"))
BIOES = TagSet("BIOES", ("O", "B-A", "I-A", "E-A", "S-A", "B-B", "E-B", "S-B"))


def tempted(tagset, seed, scale=3.0, constrain_likelihood=True, scan=False):
    """A constrained CRF whose free scores favour forbidden moves, so the constraint has work to do."""
    allowed = allowed_transitions(tagset)
    crf = CRF(len(tagset), batch_first=True, allowed=allowed, constrain_likelihood=constrain_likelihood)
    crf.scan = scan
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        crf.start_transitions.copy_(torch.randn(len(tagset), generator=g) * scale + 2 * ~crf.start_allowed)
        crf.transitions.copy_(torch.randn(len(tagset), len(tagset), generator=g) * scale + 2 * ~crf.transitions_allowed)
        crf.end_transitions.copy_(torch.randn(len(tagset), generator=g) * scale + 2 * ~crf.end_allowed)
    return crf


def path_score(crf, emissions, path, scores=None):
    """One path's score under the free parameters, or under given (start, transitions, end)."""
    start, transitions, end = scores or (crf.start_transitions, crf.transitions, crf.end_transitions)
    total = start[path[0]] + end[path[-1]] + sum(emissions[t, tag] for t, tag in enumerate(path))
    return total + sum(transitions[a, b] for a, b in zip(path, path[1:]))


def valid(tagset, path):
    return invalid_transitions([tagset.tags[i] for i in path], tagset.scheme) == 0


def all_paths(tagset, length):
    return list(itertools.product(range(len(tagset)), repeat=length))


@BOTH
@pytest.mark.parametrize("tagset", [BIO, BIOES], ids=["BIO", "BIOES"])
@pytest.mark.parametrize("seed", range(3))
def test_constrained_viterbi_is_the_best_allowed_path_by_brute_force(tagset, seed, scan):
    crf = tempted(tagset, seed, scan=scan)
    emissions, _, mask = random_batch(batch=6, steps=4, num_tags=len(tagset), seed=seed)
    emissions = emissions.detach() * 3
    with torch.no_grad():
        decoded = crf.decode(emissions, mask=mask)
        free_best_invalid = 0
        for b, path in enumerate(decoded):
            length = int(mask[b].sum())
            paths = all_paths(tagset, length)
            scored = {p: float(path_score(crf, emissions[b], p)) for p in paths}
            best_allowed = max((p for p in paths if valid(tagset, p)), key=scored.get)
            assert tuple(path) == best_allowed
            free_best_invalid += not valid(tagset, max(paths, key=scored.get))
    assert free_best_invalid  # without the constraint some of these would have come out invalid


@BOTH
@pytest.mark.parametrize("tagset", [BIO, BIOES], ids=["BIO", "BIOES"])
def test_every_decoded_path_is_valid_on_random_emissions(tagset, scan):
    crf = tempted(tagset, seed=0, scan=scan)
    free = CRF(len(tagset), batch_first=True)
    free.load_state_dict(crf.state_dict())
    invalid_free = 0
    for seed in range(5):
        emissions, _, mask = random_batch(batch=64, steps=20, num_tags=len(tagset), seed=seed)
        emissions = emissions.detach() * 10
        with torch.no_grad():
            assert all(valid(tagset, path) for path in crf.decode(emissions, mask=mask))
            invalid_free += sum(not valid(tagset, path) for path in free.decode(emissions, mask=mask))
    assert invalid_free > 100  # the same scores, unconstrained, break the scheme often


@BOTH
@pytest.mark.parametrize("tagset", [BIO, BIOES], ids=["BIO", "BIOES"])
@pytest.mark.parametrize("seed", range(3))
def test_constrained_likelihood_normalises_over_allowed_paths_by_brute_force(tagset, seed, scan):
    crf = tempted(tagset, seed, scale=1.0, scan=scan)
    emissions, tags, mask = random_batch(batch=5, steps=4, num_tags=len(tagset), seed=seed)
    emissions = emissions.detach().double().requires_grad_()
    crf.double()
    # gold paths: allowed ones for the first three, random ones (mostly invalid) for the rest
    rng = random.Random(seed)
    for b in range(3):
        length = int(mask[b].sum())
        tags[b, :length] = torch.tensor(rng.choice([p for p in all_paths(tagset, length) if valid(tagset, p)]))
    llh = crf(emissions, tags, mask=mask, reduction="none")
    assert torch.isfinite(llh).all()
    likelihood_scores = crf.scores(decoding=False)
    expected = []
    for b in range(len(tags)):
        length = int(mask[b].sum())
        gold_path = tags[b, :length].tolist()
        allowed = [p for p in all_paths(tagset, length) if valid(tagset, p)]
        normaliser = torch.logsumexp(torch.stack([path_score(crf, emissions[b], p) for p in allowed]), 0)
        if valid(tagset, gold_path):
            assert path_score(crf, emissions[b], gold_path) == path_score(
                crf, emissions[b], gold_path, likelihood_scores
            )
        expected.append(path_score(crf, emissions[b], gold_path, likelihood_scores) - normaliser)
    expected = torch.stack(expected)
    assert torch.allclose(llh, expected, atol=1e-8)
    (grad,) = torch.autograd.grad(llh.sum(), emissions)
    (grad_expected,) = torch.autograd.grad(expected.sum(), emissions)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, grad_expected, atol=1e-8)


def test_a_gold_path_with_a_forbidden_move_gives_a_finite_loss_and_bounded_gradients():
    """The defined behaviour for corpora with invalid transitions: about 1e4 per forbidden move."""
    crf = tempted(BIOES, seed=0, scale=1.0)
    index = BIOES.index()
    gold = torch.tensor([[index[t] for t in ("O", "I-A", "E-A", "B-B")]])  # O -> I-A, and B-B never closed
    emissions = torch.randn(1, 4, len(BIOES), requires_grad=True)
    llh = crf(emissions, gold, reduction="none")
    assert torch.isfinite(llh).all()
    assert 2 * LIKELIHOOD_FORBIDDEN - 100 < llh.item() < 2 * LIKELIHOOD_FORBIDDEN + 100
    (grad,) = torch.autograd.grad(llh.sum(), emissions)
    # d llh / d emission = gold indicator - allowed-path marginal: each in [-1, 1]
    assert torch.isfinite(grad).all() and grad.abs().max() <= 1 + 1e-6


def test_a_tag_no_allowed_path_reaches_leaves_the_likelihood_finite():
    # B-A without I-A or E-A: in BIOES nothing may follow it and no sentence may end on it
    tagset = TagSet("BIOES", ("O", "B-A", "S-A"))
    crf = CRF(len(tagset), batch_first=True, allowed=allowed_transitions(tagset), constrain_likelihood=True)
    emissions, tags, mask = random_batch(batch=8, steps=6, num_tags=len(tagset), seed=3)
    llh = crf(emissions, tags, mask=mask, reduction="none")
    (grad,) = torch.autograd.grad(llh.sum(), emissions)
    assert torch.isfinite(llh).all() and torch.isfinite(grad).all()
    with torch.no_grad():
        assert all(1 not in path for path in crf.decode(emissions, mask=mask))


def test_a_corpus_with_invalid_gold_transitions_trains_and_decodes_valid_tags(tmp_path, tiny_config):
    folder = make_corpus(tmp_path / "corpus")
    with (folder / "train.txt").open("a", encoding="utf-8") as f:
        f.write("之\tO\n張\tI-PER\n王\tE-PER\n也\tO\n\n洛\tB-LOC\n也\tO\n\n")
    corpus = load_corpus(folder)
    assert corpus.invalid["train"] == 2
    result = fit(tiny_config, corpus)  # raises NonFiniteLossError on an infinite or NaN loss
    dev = EncodedSplit(corpus.dev, result.vocab, result.tagset)
    assert all(valid(result.tagset, path) for path in predict_ids(result.model, dev))


def test_the_model_constrains_decoding_only_and_unconstrained_is_pytorch_crf():
    tagset = BIOES
    constrained = BiLSTMCRF(TrainConfig(hidden_size=8, num_layers=1), 20, len(tagset), allowed_transitions(tagset))
    free = BiLSTMCRF(
        TrainConfig(hidden_size=8, num_layers=1, constrained=False), 20, len(tagset), allowed_transitions(tagset)
    )
    assert not any("allowed" in key for key in constrained.state_dict())
    free.load_state_dict(constrained.state_dict())  # models saved before the masks existed load too
    assert free.crf.transitions_allowed.all() and not constrained.crf.transitions_allowed.all()
    reference = torchcrf.CRF(len(tagset), batch_first=True)
    reference.load_state_dict(free.crf.state_dict())
    emissions, tags, mask = random_batch(batch=8, steps=7, num_tags=len(tagset), seed=4)
    with torch.no_grad():
        assert free.crf.decode(emissions, mask=mask) == reference.decode(emissions, mask=mask)
        for model in (free, constrained):  # training is the same either way
            assert torch.allclose(model.crf(emissions, tags, mask=mask), reference(emissions, tags, mask=mask))


# --- an ensemble of models ---------------------------------------------------------------


def small_models(tagset, count, seed, config=None):
    """``count`` BiLSTM-CRFs over 20 characters, differently initialised, CRFs tempted toward forbidden moves."""
    config = config or TrainConfig(embed_dim=8, hidden_size=8, num_layers=1)
    models = []
    for k in range(count):
        torch.manual_seed(seed * 10 + k)
        model = BiLSTMCRF(config, 20, len(tagset), allowed_transitions(tagset))
        model.crf.load_state_dict(tempted(tagset, seed * 10 + k).state_dict())
        models.append(model.eval())
    return models


def char_batch(batch=6, steps=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, 20, (batch, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    return tokens.masked_fill(~mask, 0), mask, lengths


@BOTH
@pytest.mark.parametrize("tagset", [BIO, BIOES], ids=["BIO", "BIOES"])
@pytest.mark.parametrize("seed", range(2))
def test_an_ensemble_decodes_the_allowed_path_with_the_best_mean_score_by_brute_force(tagset, seed, scan):
    members = small_models(tagset, 3, seed)
    for member in members:
        member.crf.scan = scan
    ensemble = Ensemble(members)
    tokens, mask, lengths = char_batch(seed=seed)
    with torch.no_grad():
        decoded = ensemble.decode(tokens, mask, lengths)
        emissions = [m.emissions(tokens, mask, lengths) for m in members]
        singles = [m.decode(tokens, mask, lengths) for m in members]
        for b, path in enumerate(decoded):
            paths = [p for p in all_paths(tagset, int(lengths[b])) if valid(tagset, p)]

            def mean_score(p, b=b):
                return sum(float(path_score(m.crf, e[b], p)) for m, e in zip(members, emissions)) / len(members)

            assert tuple(path) == max(paths, key=mean_score)
    assert any(len({tuple(s[b]) for s in singles}) > 1 for b in range(len(decoded)))  # the members disagree


@pytest.mark.parametrize("bias", [-1.5, 1.5])
def test_an_entity_bias_adds_to_each_entity_character_of_a_path_by_brute_force(bias):
    """With ``entity_bias`` a model (and an ensemble) decodes the allowed path with the best score
    plus the bias once per character tagged other than O; training's scores are unchanged."""
    tagset = BIOES
    members = small_models(tagset, 2, seed=2)
    tokens, mask, lengths = char_batch(batch=8, steps=4, seed=2)
    with torch.no_grad():
        emissions = [m.emissions(tokens, mask, lengths) for m in members]
        unbiased = [m.decode(tokens, mask, lengths) for m in members] + [
            Ensemble(members).decode(tokens, mask, lengths)
        ]
        for m in members:
            with_entity_bias(m, bias)
        assert all(torch.equal(m.emissions(tokens, mask, lengths), e) for m, e in zip(members, emissions))
        ensemble = Ensemble(members)
        for tagger, parts in [(members[0], members[:1]), (members[1], members[1:]), (ensemble, members)]:
            decoded = tagger.decode(tokens, mask, lengths)
            for b, path in enumerate(decoded):
                paths = [p for p in all_paths(tagset, int(lengths[b])) if valid(tagset, p)]

                def score(p, b=b, parts=parts):
                    mean = sum(float(path_score(m.crf, emissions[members.index(m)][b], p)) for m in parts) / len(parts)
                    return mean + bias * sum(tag != 0 for tag in p)

                assert tuple(path) == max(paths, key=score)
        biased = [m.decode(tokens, mask, lengths) for m in members] + [ensemble.decode(tokens, mask, lengths)]
    assert all(b != u for b, u in zip(biased, unbiased))  # the bias changed some paths of each
    assert with_entity_bias(ensemble, 0.0).config.entity_bias == 0.0 == members[0].config.entity_bias


def test_an_ensemble_of_copies_tags_as_the_model_alone_and_needs_two_members():
    (model,) = small_models(BIOES, 1, seed=5)
    copy = BiLSTMCRF(model.config, 20, len(BIOES), allowed_transitions(BIOES)).eval()
    copy.load_state_dict(model.state_dict())
    tokens, mask, lengths = char_batch(batch=8, steps=7, seed=5)
    with torch.no_grad():
        assert Ensemble([model, copy]).decode(tokens, mask, lengths) == model.decode(tokens, mask, lengths)
    with pytest.raises(ValueError, match="at least two members"):
        Ensemble([model])
