"""User-level DP fine-tuning (ELS and ULS) of a tiny BERT on a small labelled file with synthetic user ids.

The reference for the reported eps is the library itself: edgeworth.userlevel.epsilon for the run's settings, and
an edgeworth.Accountant rebuilt from the recorded ledger.
"""
import json

import pytest
import torch

import edgeworth
import edgeworth.finetune as ft
import edgeworth.finetune.loop as ft_loop
from edgeworth import cli, userlevel
from edgeworth.textdata import read_labelled_text
from finetune_data import strict_json, write_labelled_tsv

torch.set_num_threads(1)
DELTA = 1e-5


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    """200 sentences with a synthetic user column: user u wrote 1 + (u mod 7) of them in a row."""
    return write_labelled_tsv(tmp_path_factory.mktemp("users") / "train_users.tsv", 200, seed=5, user_pattern=7)


@pytest.fixture(scope="module")
def dev_file(tmp_path_factory):
    return write_labelled_tsv(tmp_path_factory.mktemp("dev") / "dev.tsv", 50, seed=6)


@pytest.fixture
def tiny_users(tiny_model, user_file, dev_file):
    return dict(model=tiny_model, train_file=user_file, dev_file=dev_file, max_dev=50, batch_size=20, max_length=24,
                lr=1e-3, progress=False, privacy_unit="user", user_column="user")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from test_finetune import build_tiny_model  # the same 2-layer BERT of width 32
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def counts_of(user_file):
    users = read_labelled_text(user_file, user_column="user").users
    return [users.count(u) for u in dict.fromkeys(users)]


@pytest.mark.parametrize("sampling", ["els", "uls"])
def test_user_level_run_reports_the_library_eps_for_its_ledger(tiny_users, user_file, sampling):
    report = ft.finetune(steps=3, user_sampling=sampling, contribution_bound=3, **tiny_users)
    counts = counts_of(user_file)
    kept = sum(min(c, 3) for c in counts)
    q = 20 / kept
    assert report.privacy_unit == "user" and report.user_sampling == sampling and report.contribution_bound == 3
    assert report.users == len(counts) and report.sample_rate == q and report.steps == 3
    sigma = report.noise_multiplier
    assert sigma == userlevel.noise_multiplier(eps=8.0, delta=DELTA, steps=3, q=q, contribution_bound=3,
                                               sampling=sampling)
    ledger = edgeworth.Accountant()
    ledger.load_state_dict({"history": report.history})
    assert len(ledger) == 3
    assert report.eps_certified == ledger.epsilon(DELTA)
    assert report.eps_certified == userlevel.epsilon(sigma=sigma, delta=DELTA, steps=3, q=q, contribution_bound=3,
                                                     sampling=sampling)
    assert report.eps_certified <= 8.0
    if sampling == "els":
        assert ledger.mechanisms() == [(userlevel.els_mechanism(sigma, q, 3), 3)]
    else:
        assert report.history == [[sigma, q, 3]]
    assert 0.0 <= report.dev_accuracy <= 1.0 and report.examples_seen > 0
    assert "user-level" in report.as_text()
    json.dumps(report.as_dict())


def test_default_contribution_bound_is_the_median_for_els(tiny_users, user_file):
    report = ft.finetune(steps=1, user_sampling="els", **tiny_users)
    assert report.contribution_bound == userlevel.choose_contribution_bound(counts_of(user_file), "els")


def test_user_level_budget_guard(tiny_users):
    report = ft.finetune(steps=50, noise_multiplier=3.0, target_eps=2.0, user_sampling="els", contribution_bound=2,
                         **tiny_users)
    n, q = report.steps, report.sample_rate
    assert report.stopped_by_budget_guard and 1 <= n < 50
    assert userlevel.epsilon(sigma=3.0, delta=DELTA, steps=n, q=q, contribution_bound=2) <= 2.0
    assert userlevel.epsilon(sigma=3.0, delta=DELTA, steps=n + 1, q=q, contribution_bound=2) > 2.0


def test_cli_user_level(tiny_model, user_file, dev_file, capsys):
    code = cli.main(["finetune", "--model", tiny_model, "--train-file", user_file, "--dev-file", dev_file,
                     "--max-dev", "20",
                     "--batch-size", "20", "--max-length", "24", "--steps", "2", "--no-progress", "--json",
                     "--privacy-unit", "user", "--user-column", "user", "--user-sampling", "uls",
                     "--contribution-bound", "4"])
    assert code == 0
    out = strict_json(capsys.readouterr().out)
    assert out["privacy_unit"] == "user" and out["user_sampling"] == "uls" and out["contribution_bound"] == 4
    assert out["eps_certified"] == userlevel.epsilon(sigma=out["noise_multiplier"], delta=DELTA, steps=2,
                                                     q=out["sample_rate"], contribution_bound=4, sampling="uls")


@pytest.mark.parametrize("overrides, match", [
    (dict(privacy_unit="user"), "user_column"),
    (dict(privacy_unit="user", user_column="user", accountant="rdp"), "accountant"),
    (dict(privacy_unit="user", user_column="user", secure_rng=True), "secure_rng"),
    (dict(privacy_unit="user", user_column="user", stop_after=2), "stop_after"),
    (dict(privacy_unit="user", user_column="user", user_sampling="both"), "user_sampling"),
    (dict(privacy_unit="group"), "privacy_unit"),
    (dict(privacy_unit="user", user_column="user", contribution_bound=0), "contribution_bound"),
])
def test_bad_user_level_settings_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        ft.FinetuneConfig(**overrides).validate()


def test_missing_user_column_is_named(tiny_users):
    with pytest.raises(ValueError, match="user_column"):
        ft.finetune(steps=1, **{**tiny_users, "user_column": "author"})


def test_dp_step_clips_each_unit_and_averages_within_it():
    """sigma = 0: the step's gradient is the sum of the units' clipped gradients (of the mean loss over each
    unit's examples) over the expected number of units."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    params = list(net.parameters())

    class Head(torch.nn.Module):  # the classifier's call signature: (input_ids, attention_mask)
        def forward(self, x, mask):
            return net(x.float())

    data = [(torch.randn(3), torch.tensor(i % 2)) for i in range(5)]

    def collate(batch):
        return torch.stack([x for x, _ in batch]), torch.ones(len(batch)), torch.stack([y for _, y in batch])

    def unit_grad(unit):
        x, _, y = collate([data[i] for i in unit])
        return torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), y), params)

    units, criterion = [[0, 1, 2], [3], [4]], torch.nn.CrossEntropyLoss()
    ft_loop.dp_step(Head(), params, units, [0, 2], data, collate, criterion, 0.0, 1e6, 4.0, torch.device("cpu"))
    want = [(a + b) / 4.0 for a, b in zip(unit_grad(units[0]), unit_grad(units[2]))]
    for p, w in zip(params, want):
        assert torch.allclose(p.grad, w, atol=1e-7)
    clip = 1e-3
    ft_loop.dp_step(Head(), params, units, [0, 2], data, collate, criterion, 0.0, clip, 1.0, torch.device("cpu"))
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert norm <= 2 * clip * (1 + 1e-6)
    g0 = unit_grad(units[0])
    n0 = torch.sqrt(sum((g ** 2).sum() for g in g0))
    g2 = unit_grad(units[2])
    n2 = torch.sqrt(sum((g ** 2).sum() for g in g2))
    for p, a, b in zip(params, g0, g2):
        assert torch.allclose(p.grad, a * clip / n0 + b * clip / n2, atol=1e-9)
