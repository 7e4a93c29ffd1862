"""The models: their formulas, their fast rankers against forward(), and the checkpoint format."""

import pickle
from pathlib import Path

import pytest
import torch

from conftest import make_params
from lenscf.checkpoints import constructor_args, load_checkpoint, save_checkpoint
from lenscf.errors import PipelineError
from lenscf.models import MODELS, CollabFNet, Dropout, build_model, dropout_keep
from lenscf.params import MODEL_KEYS, MODEL_NAMES, ModelParams

FIXTURES = Path(__file__).with_name("fixtures")


def made(name: str, n_users: int = 5, n_items: int = 7) -> torch.nn.Module:
    """A model with random weights everywhere (biases included), built from tests/params.yaml's keys."""
    torch.manual_seed(0)
    model = build_model(name, n_users, n_items, 3.5, ModelParams.load(make_params(), name).args)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
        if name == "popularity":
            model.count.copy_(torch.arange(n_items, 0, -1).float())
            model.item_bias.normal_(0, 0.5)
    return model.eval()


def test_every_model_has_a_schema_and_the_schemas_name_every_model() -> None:
    assert set(MODELS) == set(MODEL_KEYS) and list(MODEL_NAMES) == list(MODELS)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_gives_one_prediction_per_pair(name: str) -> None:
    out = made(name)(torch.tensor([0, 4, 2]), torch.tensor([6, 0, 3]))
    assert out.shape == (3,) and out.dtype == torch.float32


def assert_ranker_is_forward(model: torch.nn.Module, users: torch.Tensor) -> None:
    out = torch.empty(len(users), model.n_items)
    with torch.no_grad():
        model.ranker()(users, out)
        pairs = model(users.repeat_interleave(model.n_items), torch.arange(model.n_items).repeat(len(users)))
    torch.testing.assert_close(out, pairs.view(len(users), model.n_items), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "popularity"])
def test_ranker_equals_forward_over_the_catalogue(name: str) -> None:
    """The fast scorer (one matrix product, or collab_fnet's split first layer) is forward() for every pair."""
    assert_ranker_is_forward(made(name, n_users=6, n_items=9), torch.tensor([5, 0, 3]))


def test_popularity_ranks_by_count_and_predicts_its_damped_mean() -> None:
    model = made("popularity")
    out = torch.empty(2, 7)
    model.ranker()(torch.tensor([0, 1]), out)
    assert out[0].tolist() == model.count.tolist() and out[1].tolist() == model.count.tolist()
    assert model(torch.tensor([0]), torch.tensor([2])).item() == pytest.approx(3.5 + model.item_bias[2].item())


def test_collab_fnet_ranker_holds_with_many_users_per_chunk() -> None:
    model = CollabFNet(40, 300, 3.0, emb_size=4, n_hidden=3, dropout=0.3, mean_offset=True).eval()
    assert_ranker_is_forward(model, torch.arange(40))


def test_dropout_keeps_nn_dropouts_semantics() -> None:
    x = torch.ones(200_000)
    torch.manual_seed(0)
    dropped = Dropout(0.25).train()(x)
    assert dropped.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert (dropped == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert torch.equal(Dropout(0.25).eval()(x), x)


@pytest.mark.parametrize(("p", "kept"), [(0.0, 1.0), (1 - 1e-6, 0.0)])
def test_dropout_masks_at_the_ends_of_p(p: float, kept: float) -> None:
    """p is rounded to a multiple of 2⁻¹⁶: at 0 nothing is dropped, and p that rounds to 1 drops everything."""
    assert torch.equal(dropout_keep(torch.Size([3, 5]), p, torch.device("cpu")), torch.full((3, 5), kept))


def test_dropout_masks_follow_torchs_seed() -> None:
    """The engine and forward() draw the same mask from the same torch seed, and another seed draws another."""
    masks = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        masks.append(dropout_keep(torch.Size([64, 32]), 0.5, torch.device("cpu")))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_rebuilds_the_model(name: str, tmp_path: Path) -> None:
    model = made(name)
    save_checkpoint(tmp_path / f"{name}.pt", name, model)
    loaded = load_checkpoint(tmp_path / f"{name}.pt")
    assert type(loaded) is type(model) and not loaded.training
    assert constructor_args(loaded) == constructor_args(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    checkpoint = torch.load(tmp_path / f"{name}.pt", weights_only=True)
    assert set(checkpoint) == {"format", "model", "args", "state_dict"}  # what the model is, not how it was trained


def test_a_checkpoint_written_before_now_still_loads() -> None:
    """tests/fixtures/mf_bias-format1.pt was written by this format's first version; training keys added since
    must not break it."""
    model = load_checkpoint(FIXTURES / "mf_bias-format1.pt")
    assert constructor_args(model) == {"n_users": 3, "n_items": 4, "mean": 3.5, "emb_size": 2, "mean_offset": True}
    assert model(torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(3.5 + 0.3 + 0.25 - 0.1 * 0.2 * 2)


class Tampered:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint", pickle.dumps(Tampered())],
    ids=["garbage", "pickled code"],
)
def test_a_bad_checkpoint_is_refused_in_one_line(content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "mf.pt"
    path.write_bytes(content)
    with pytest.raises(
        PipelineError,
        match=r"mf.pt: not a checkpoint this pipeline wrote; `dvc checkout .*mf.pt` or `dvc repro train@mf`",
    ):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_a_tampered_torch_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "popularity.pt"
    torch.save({"format": 1, "model": "popularity", "args": {}, "state_dict": Tampered()}, path)
    with pytest.raises(PipelineError, match=r"`dvc repro count@popularity` restores it"):
        load_checkpoint(path)


def test_a_missing_checkpoint_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"mf_bias.pt: no trained model; run `dvc repro train@mf_bias` first"):
        load_checkpoint(tmp_path / "mf_bias.pt")
