"""Stage evaluate and the recommend command: fallbacks, clipping, top-N, outputs, edge cases and clear refusals."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import encode
import evaluate
import recommend
import train as train_stage
from conftest import ROOT, arrow, low_rank_ratings, make_params, run_main, write_params
from lenscf.artifacts import write_json, write_table
from lenscf.errors import PipelineError
from lenscf.evaluation import ranking_section
from lenscf.models import BPR, MF, Biases, GlobalMean, MFBias, Popularity
from lenscf.params import MODEL_NAMES, EvaluateParams
from lenscf.scoring import SeenItems, predict_ratings, top_unseen
from lenscf.splits import Ratings, load_encoded


def ratings(*rows: tuple[int, int, float]) -> Ratings:
    u, i, r = zip(*rows, strict=True)
    return Ratings(torch.tensor(u), torch.tensor(i), torch.tensor(r, dtype=torch.float32))


def biases_model(b_u: list[float], b_i: list[float], mean: float = 3.0) -> Biases:
    model = Biases(len(b_u), len(b_i), mean)
    with torch.no_grad():
        model.user_bias.weight.copy_(torch.tensor(b_u).unsqueeze(1))
        model.item_bias.weight.copy_(torch.tensor(b_i).unsqueeze(1))
    return model.eval()


def test_cold_pairs_fall_back_to_the_known_sides_bias() -> None:
    baseline = biases_model([0.5, -0.5], [0.25, 1.0])
    pairs = ratings((0, 1, 0.0), (-1, 1, 0.0), (1, -1, 0.0), (-1, -1, 0.0))
    # warm: μ + b_u + b_i; unknown user: μ + b_i; unknown item: μ + b_u; both unknown: μ
    got = predict_ratings(baseline, baseline, pairs, (0.5, 5.0))
    assert got.tolist() == [4.5, 4.0, 2.5, 3.0]


def test_a_model_without_biases_takes_the_baselines_for_cold_pairs() -> None:
    baseline = biases_model([0.5, -0.5], [0.25, 1.0])
    mf = MF(2, 2, 3.0, emb_size=1, mean_offset=True).eval()
    with torch.no_grad():
        mf.user_emb.weight.fill_(1.0)
        mf.item_emb.weight.fill_(0.1)
    got = predict_ratings(mf, baseline, ratings((0, 0, 0.0), (-1, 1, 0.0), (1, -1, 0.0)), (0.5, 5.0))
    assert got.tolist() == pytest.approx([3.1, 4.0, 2.5])


def test_a_model_with_one_bias_uses_it_and_borrows_the_other() -> None:
    baseline = biases_model([0.5, -0.5], [0.25, 1.0])
    popularity = Popularity(2, 2, 3.0, damping=1.0)
    popularity.item_bias.copy_(torch.tensor([-1.0, 0.75]))
    got = predict_ratings(popularity, baseline, ratings((-1, 1, 0.0), (1, -1, 0.0)), (0.5, 5.0))
    assert got.tolist() == [3.75, 2.5]  # its own b_i for an unknown user; the baseline's b_u for an unknown item


def test_global_mean_predicts_the_mean_for_cold_pairs_too() -> None:
    baseline = biases_model([0.5, -0.5], [0.25, 1.0])
    got = predict_ratings(GlobalMean(2, 2, 3.0), baseline, ratings((-1, 1, 0.0), (1, -1, 0.0)), (0.5, 5.0))
    assert got.tolist() == [3.0, 3.0]


def test_a_ranking_model_hands_rating_prediction_to_the_baseline() -> None:
    baseline = biases_model([0.5, -0.5], [0.25, 1.0])
    got = predict_ratings(BPR(2, 2, emb_size=3).eval(), baseline, ratings((0, 1, 0.0), (1, 0, 0.0)), (0.5, 5.0))
    assert got.tolist() == [4.5, 2.75]


def test_predictions_are_clipped_to_the_rating_scale() -> None:
    baseline = biases_model([3.0, -3.0], [0.0, 0.0])
    got = predict_ratings(baseline, baseline, ratings((0, 0, 0.0), (1, 1, 0.0)), (1.0, 5.0))
    assert got.tolist() == [5.0, 1.0]


def brute_force_top(model: torch.nn.Module, users: list[int], seen: set[tuple[int, int]], n_items: int, n: int):
    """Per-pair scoring: forward() on every (user, item), skipping seen pairs, sorted by score."""
    tops = []
    with torch.no_grad():
        for u in users:
            scores = model(torch.full((n_items,), u), torch.arange(n_items))
            candidates = [i for i in range(n_items) if (u, i) not in seen]
            tops.append(sorted(candidates, key=lambda i: -scores[i].item())[:n])
    return tops


@pytest.mark.parametrize("cls", [MFBias, BPR])
def test_blocked_top_n_gives_the_per_pair_top_lists(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    import lenscf.scoring

    monkeypatch.setattr(lenscf.scoring, "SCORES_PER_BLOCK", 40)  # several users per block, several blocks
    torch.manual_seed(0)
    model = (MFBias(9, 20, 3.0, emb_size=4, mean_offset=True) if cls is MFBias else BPR(9, 20, emb_size=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    train = ratings(*[(u, (3 * u + k) % 20, 3.0) for u in range(9) for k in range(u % 4)])
    seen = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    users = [8, 0, 3, 4, 5, 6, 1]
    _, top = top_unseen(model, torch.tensor(users), SeenItems(train, 9), n=5)
    assert top.tolist() == brute_force_top(model, users, seen, 20, 5)


def prepare_encoded(project: Path, ratings_frame: pd.DataFrame | None = None, split_at: int = 600) -> None:
    """Encoded tables of low-rank ratings: a random split of the first 650, whose validation part is warm,
    followed by the last users' ratings, which are cold."""
    if ratings_frame is None:
        frame = low_rank_ratings()
        frame = pd.concat([frame.iloc[:650].sample(frac=1.0, random_state=0), frame.iloc[650:]])
    else:
        frame = ratings_frame
    frame = frame.astype({"userId": "int32", "movieId": "int32", "rating": "float32"})
    tables = encode.encode(arrow(frame.iloc[:split_at]), arrow(frame.iloc[split_at:]))
    titles = [f"Movie {m}" for m in tables["items"]["movieId"].to_pylist()]
    tables["items"] = tables["items"].append_column("title", pa.array(titles))  # as the encode stage adds them
    for name, table in tables.items():
        write_table(f"data/encoded/{name}.parquet", table)
    info = {"n_users": len(tables["users"]), "n_items": len(tables["items"]), "rating_scale": [0.5, 5.0]}
    write_json("data/encoded/info.json", info | {"n_train": len(tables["train"])})


@pytest.fixture
def trained(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prepare_encoded(project)
    for name in ("biases", "mf_bias", "bpr", "popularity"):
        run_main(train_stage, monkeypatch, name)
    return project


def test_evaluate_stage_writes_metrics_predictions_and_plots(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_main(evaluate, monkeypatch, "mf_bias")
    metrics = json.loads(Path("metrics/mf_bias.json").read_text())
    assert set(metrics) == {"warm", "all", "ranking"}
    predictions = pd.read_parquet("data/predictions/mf_bias.parquet")
    assert predictions.columns.tolist() == ["userId", "movieId", "rating", "prediction", "warm"]
    val = pd.read_parquet("data/encoded/val.parquet")
    assert len(predictions) == metrics["all"]["n_ratings"] == len(val)
    assert metrics["warm"]["n_ratings"] == predictions["warm"].sum() < len(val)
    assert metrics["all"]["n_cold"] == (~predictions["warm"]).sum()
    warm = predictions[predictions["warm"]]
    assert metrics["warm"]["mse"] == pytest.approx(((warm["prediction"] - warm["rating"]) ** 2).mean(), rel=1e-5)
    assert metrics["warm"]["mse_ci95"]["low"] < metrics["warm"]["mse"] < metrics["warm"]["mse_ci95"]["high"]
    ranking = metrics["ranking"]
    for name in ("precision", "recall", "ndcg", "hit_rate", "map", "mrr", "novelty"):
        assert ranking["ci95"][f"{name}@10"]["low"] <= ranking[f"{name}@10"] <= ranking["ci95"][f"{name}@10"]["high"]
    assert 0 < ranking["coverage@10"] <= 1 and ranking["sampled_users"] is False
    # original MovieLens ids: the test data's users are 1, 4, 7, ... and its movies 2, 9, 16, ...
    assert ((predictions["userId"] - 1) % 3 == 0).all() and ((predictions["movieId"] - 2) % 7 == 0).all()
    calibration = json.loads(Path("plots/calibration/mf_bias.json").read_text())
    assert sum(row["n"] for row in calibration) == len(predictions) and calibration[0]["model"] == "mf_bias"
    activity = json.loads(Path("plots/activity/mf_bias.json").read_text())
    assert sum(row["n"] for row in activity) == len(warm)
    assert sum(row["mse"] * row["n"] for row in activity) / len(warm) == pytest.approx(metrics["warm"]["mse"])


def test_evaluation_is_byte_identical_when_repeated(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = [Path(p) for p in ("metrics/bpr.json", "data/predictions/bpr.parquet", "plots/activity/bpr.json")]
    run_main(evaluate, monkeypatch, "bpr")
    first = [p.read_bytes() for p in outputs]
    run_main(evaluate, monkeypatch, "bpr")
    assert [p.read_bytes() for p in outputs] == first


def test_max_users_samples_top_n_only_and_says_so(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_main(evaluate, monkeypatch, "popularity")
    full = json.loads(Path("metrics/popularity.json").read_text())
    write_params(trained, evaluate={"max_users": 2})
    run_main(evaluate, monkeypatch, "popularity")
    sampled = json.loads(Path("metrics/popularity.json").read_text())
    assert sampled["ranking"]["sampled_users"] is True and sampled["ranking"]["n_users_ranked"] == 2
    assert sampled["ranking"]["n_users_eligible"] == full["ranking"]["n_users_ranked"] > 2
    assert sampled["warm"] == full["warm"] and sampled["all"] == full["all"]  # rating error still covers every rating


def test_ranking_without_relevant_ratings_is_defined(project: Path) -> None:
    prepare_encoded(project)
    data = load_encoded()
    params = EvaluateParams.load(make_params(evaluate={"relevant_rating": 99.0}))
    section = ranking_section(Popularity(data.n_users, data.n_items, 3.0, 1.0), data, params)
    assert section == {"n_users_eligible": 0, "sampled_users": False, "n_users_ranked": 0}


def test_no_warm_validation_ratings_gives_counts_not_nan(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = low_rank_ratings()
    cold = frame.assign(userId=frame["userId"] + 10_000)  # validation users training never saw
    prepare_encoded(project, pd.concat([frame.iloc[:600], cold.iloc[600:]]))
    run_main(train_stage, monkeypatch, "biases")
    run_main(evaluate, monkeypatch, "biases")
    metrics = json.loads(Path("metrics/biases.json").read_text())
    assert metrics["warm"] == {"n_ratings": 0} and metrics["ranking"]["n_users_ranked"] == 0
    assert metrics["all"]["n_ratings"] == metrics["all"]["n_cold"] > 0


def test_top_n_larger_than_the_catalogue_is_one_clear_line(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_params(trained, evaluate={"top_n": 10_000})
    with pytest.raises(PipelineError, match=r"evaluate.top_n \(10000\) is larger than the catalogue \(30 movies\)"):
        run_main(evaluate, monkeypatch, "popularity")


def test_recommend_lists_unseen_movies_with_titles(trained: Path) -> None:
    items = pd.read_parquet("data/encoded/items.parquet").assign(title=lambda f: "Film " + f["movieId"].astype(str))
    write_table("data/encoded/items.parquet", arrow(items))
    top = recommend.recommend("bpr", user_id=1, n=5)
    assert len(top) == 5 and top["title"].str.startswith("Film ").all()
    assert top["score"].is_monotonic_decreasing
    train, users = pd.read_parquet("data/encoded/train.parquet"), pd.read_parquet("data/encoded/users.parquet")
    user = users.loc[users["userId"] == 1, "user"].item()
    seen = set(items["movieId"][train.loc[train["user"] == user, "item"]])
    assert seen
    assert not seen & set(top["movieId"])


def test_recommend_refuses_an_unknown_user(trained: Path) -> None:
    with pytest.raises(PipelineError, match="userId 2 has no training ratings"):
        recommend.recommend("mf_bias", user_id=2, n=5)


def test_recommend_refuses_an_untrained_model(trained: Path) -> None:
    with pytest.raises(PipelineError, match=r"models/mf.pt: no trained model; run `dvc repro train@mf` first"):
        recommend.recommend("mf", user_id=1, n=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stages/train.py"], "the following arguments are required: model"),
        (["stages/train.py", "svdpp"], "argument model: invalid choice: 'svdpp'"),
        (["stages/evaluate.py", "nope"], "argument model: invalid choice: 'nope'"),
        (["stages/recommend.py", "mf_bias", "1", "-n", "-5"], "argument -n: -5 is not a whole number > 0"),
        (["stages/recommend.py", "mf_bias", "one"], "argument user_id: invalid int value: 'one'"),
        (["stages/download.py", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / args[0]), *args[1:]], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    if "model" in message and "choice" in message:
        assert ", ".join(f"'{m}'" for m in MODEL_NAMES) in result.stderr  # the accepted values


def test_a_stage_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/train.py"), "mf"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and result.stderr.strip() == "error: params.yaml: models must be a mapping"


def test_cold_metrics_cover_more_ratings_than_warm(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_main(evaluate, monkeypatch, "biases")
    metrics = json.loads(Path("metrics/biases.json").read_text())
    assert metrics["all"]["n_ratings"] > metrics["warm"]["n_ratings"]
    assert math.isfinite(metrics["all"]["mse"]) and np.isfinite(metrics["all"]["mse_ci95"]["low"])
