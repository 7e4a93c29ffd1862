"""Stage train: byte-identical outputs, the history it records, and params refused before any work."""

import json
from pathlib import Path

import pytest

import train as train_stage
from conftest import run_main, write_params
from lenscf.params import COUNTED, MODEL_NAMES
from test_evaluate import prepare_encoded


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_stage_is_byte_identical_when_repeated(project: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    prepare_encoded(project)
    write_params(project, holdout_frac=0.2)
    outputs = [Path(f"models/{name}.pt")] + ([] if name in COUNTED else [Path(f"plots/history/{name}.json")])
    run_main(train_stage, monkeypatch, name)
    first = [p.read_bytes() for p in outputs]
    run_main(train_stage, monkeypatch, name)
    assert [p.read_bytes() for p in outputs] == first
    if name in COUNTED:
        assert not Path("plots/history").exists()  # nothing trained, no epochs to record


def test_history_records_the_search_and_the_refit(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_encoded(project)
    write_params(project, holdout_frac=0.2, epochs=4, patience=2)
    run_main(train_stage, monkeypatch, "mf_bias")
    record = json.loads(Path("plots/history/mf_bias.json").read_text())
    assert set(record) == {"epochs", "searched_epochs", "history"}
    assert len(record["history"]) == record["epochs"] <= record["searched_epochs"] <= 4
    assert set(record["history"][0]) == {"model", "epoch", "train_loss", "val_loss", "holdout_loss"}
    assert {row["model"] for row in record["history"]} == {"mf_bias"}


ALS = {"emb_size": 4, "alpha": 1, "reg": 1, "sweeps": 2, "cg_steps": 2}


def test_ials_records_its_objective_per_sweep(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_encoded(project)
    write_params(project)
    run_main(train_stage, monkeypatch, "ials")
    record = json.loads(Path("plots/history/ials.json").read_text())
    assert record["sweeps"] == 4 and [row["sweep"] for row in record["history"]] == [1, 2, 3, 4]
    assert {row["model"] for row in record["history"]} == {"ials"}
    objectives = [row["objective"] for row in record["history"]]
    assert objectives == sorted(objectives, reverse=True)  # three CG steps from a warm start still descend


@pytest.mark.parametrize(
    ("model", "change", "message"),
    [
        ("mf_bias", {"lr": -0.1}, "lr must be a positive number, got -0.1"),
        ("mf_bias", {"batch_size": 1.5}, "batch_size must be a whole number >= 0"),
        ("mf_bias", {"batch_size": "0%"}, 'batch_size must be a whole number >= 0 or a share such as "10%"'),
        ("mf_bias", {"batch_size": "150%"}, "got '150%'"),
        ("mf_bias", {"batch_size": "10"}, "got '10'"),
        ("mf_bias", {"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ("mf_bias", {"row_scaling": "linear"}, "row_scaling must be one of sqrt, none, got 'linear'"),
        ("mf_bias", {"threads": -1}, "threads must be a whole number >= 0, got -1"),
        ("mf_bias", {"holdout_frac": 1.0}, r"holdout_frac must be a number in \[0, 1\)"),
        ("mf", {"min_improvement": -0.1}, r"min_improvement must be a number in \[0, 1\)"),
        ("bpr", {"beta1": 1}, r"beta1 must be a number in \[0, 1\), got 1"),
        ("mf", {"beta2": "0.99"}, r"beta2 must be a number in \[0, 1\), got '0.99'"),
        (
            "mf_bias",
            {"models": {"mf_bias": {"emb_size": 8, "mean_offset": True, "bias_l2": -0.1}}},
            "models.mf_bias.bias_l2 must be a number >= 0, got -0.1",
        ),
        (
            "mf_bias",
            {"models": {"mf_bias": {"emb_size": 8, "mean_offset": True}}},
            "missing key models.mf_bias.bias_l2",
        ),
        (
            "mf",
            {"models": {"mf": {"emb_size": 8, "mean_offset": True, "bias_l2": 0}}},
            "models.mf.bias_l2 is not a key of mf",
        ),
        ("biases", {"models": {"biases": {"bias_l2": 0}}}, "models.biases.bias_l2 is not a key of biases"),
        (
            "mf_bias",
            {"models": {"mf_bias": {"emb_size": 8, "mean_offset": True, "bias_l2": 0, "row_l2": -0.5}}},
            "models.mf_bias.row_l2 must be a number >= 0, got -0.5",
        ),
        ("mf", {"models": {"mf": {"emb_size": 8, "mean_offset": True}}}, "missing key models.mf.row_l2"),
        ("bpr", {"models": {"bpr": {"emb_size": 8, "row_l2": 0}}}, "models.bpr.row_l2 is not a key of bpr"),
        (
            "mf",
            {"models": {"mf": {"emb_size": 4, "mean_offset": True, "min_improvement": 1}}},
            r"models.mf.min_improvement must be a number in \[0, 1\)",
        ),
        ("mf", {"models": {"mf": {"n_hiden": 3}}}, "models.mf.n_hiden is not a key of mf"),
        (
            "mf",
            {"models": {"mf": {"emb_size": 8, "mean_offset": True, "lr": 0}}},
            "models.mf.lr must be a positive number",
        ),
        (
            "mf",
            {"models": {"mf": {"emb_size": 0, "mean_offset": True}}},
            "models.mf.emb_size must be a whole number > 0",
        ),
        ("mf", {"models": {"mf": {"mean_offset": True}}}, "missing key models.mf.emb_size"),
        ("biases", {"models": {"biases": {"emb_size": 8}}}, "models.biases.emb_size is not a key of biases"),
        ("biases", {"models": {"biases": {"mean_offset": False}}}, "models.biases.mean_offset is not a key of biases"),
        (
            "mf",
            {"models": {"mf": {"emb_size": 8, "mean_offset": True, "dense_lr": 0.1}}},
            "models.mf.dense_lr is not a key",
        ),
        ("global_mean", {"models": {"global_mean": {"lr": 0.1}}}, "models.global_mean.lr is not a key of global_mean"),
        ("popularity", {"models": {"popularity": {"damping": -1}}}, "models.popularity.damping must be a number >= 0"),
        ("ials", {"models": {"ials": {**ALS, "lr": 0.1}}}, "models.ials.lr is not a key of ials"),
        ("ials", {"models": {"ials": {**ALS, "reg": 0}}}, "models.ials.reg must be a positive number, got 0"),
        ("ials", {"models": {"ials": {**ALS, "cg_steps": 0}}}, "models.ials.cg_steps must be a whole number > 0"),
        ("ials", {"models": {"ials": {**ALS, "seed": -1}}}, "models.ials.seed must be a whole number >= 0"),
        ("ials", {"models": {"ials": {**ALS, "cg_steps": None}}}, "models.ials.cg_steps must be a whole number > 0"),
        ("ials", {"models": {"ials": {"emb_size": 4}}}, "missing key models.ials.alpha"),
        (
            "collab_fnet",
            {
                "models": {
                    "collab_fnet": {"emb_size": 8, "n_hidden": 2, "dropout": 1.5, "mean_offset": True, "dense_lr": 0.1}
                }
            },
            r"models.collab_fnet.dropout must be a number in \[0, 1\)",
        ),
    ],
)
def test_bad_params_stop_before_any_work(
    project: Path, monkeypatch: pytest.MonkeyPatch, model: str, change: dict, message: str
) -> None:
    if "models" in change:  # replace the model's section whole, so a missing key is missing
        params = write_params(project)
        params["models"][model] = change["models"][model]
        write_params(project, models=params["models"])
    else:
        write_params(project, **change)
    with pytest.raises(Exception, match=message) as raised:
        run_main(train_stage, monkeypatch, model)
    assert raised.type.__name__ == "PipelineError"
    assert not Path("models").exists() and not Path("plots").exists()


def test_an_empty_holdout_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_encoded(project)
    write_params(project, holdout_frac=0.0001)
    with pytest.raises(Exception, match=r"holdout_frac 0\.0001 leaves no rating to stop on"):
        run_main(train_stage, monkeypatch, "biases")
