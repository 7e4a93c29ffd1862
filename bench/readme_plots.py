"""Render README's figures: the pipeline's own plots as `dvc plots show` defines them, and the scale benchmark.

    pip install -r bench/requirements.txt
    python bench/readme_plots.py

The pipeline's figures are the Vega-Lite specs `dvc plots show --json` returns (the templates under .dvc/plots/
filled with plots/*), rendered as they are: the PNG is the chart a user opens, not a re-drawing. The scale
figure is drawn from bench/results/scale*.json, which bench/scale.py writes.
"""

import json
import subprocess
from pathlib import Path

import vl_convert

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FIGURES = {  # plot id in dvc.yaml -> README's file
    "Validation MSE by epoch": "plots/val_loss.png",
    "Validation MSE by training ratings per user": "plots/activity.png",
}


def pipeline_figures() -> None:
    shown = subprocess.run(["dvc", "plots", "show", "--json"], cwd=ROOT, capture_output=True, check=True, text=True)
    data = json.loads(shown.stdout)["data"]
    for plot, path in FIGURES.items():
        spec = data[plot][0]["content"]
        (ROOT / path).write_bytes(vl_convert.vegalite_to_png(json.dumps(spec), scale=1.5))


def scale_figure() -> None:
    """Every bench/results/scale*.json (one scale.py run each), by size; a size some stages were skipped at
    gets no whole-repro point, and its per-kind sums leave those stages out."""
    results = sorted(
        (r for path in sorted(RESULTS.glob("scale*.json")) for r in json.loads(path.read_text())),
        key=lambda r: r["ratings"],
    )
    every_stage = set().union(*(r["stages"] for r in results))
    rows = [
        {"ratings": r["ratings"], "stage": stage.split("@")[0] if "@" in stage else stage, "seconds": s["wall_s"]}
        for r in results
        for stage, s in r["stages"].items()
    ]
    totals: dict[tuple[int, str], float] = {}
    for row in rows:  # one line per kind of stage: download, split, encode, count, train, evaluate
        totals[row["ratings"], row["stage"]] = totals.get((row["ratings"], row["stage"]), 0.0) + row["seconds"]
    values = [{"ratings": n, "stage": stage, "seconds": s} for (n, stage), s in totals.items()]
    values += [
        {"ratings": r["ratings"], "stage": "whole dvc repro", "seconds": sum(s["wall_s"] for s in r["stages"].values())}
        for r in results
        if set(r["stages"]) == every_stage
    ]
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Pipeline wall time against ratings (synthetic ml-25m layout, 2 cores)",
        "width": 480,
        "height": 300,
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "ratings", "type": "quantitative", "scale": {"type": "log"}},
            "y": {"field": "seconds", "type": "quantitative", "scale": {"type": "log"}, "title": "wall seconds"},
            "color": {"field": "stage", "type": "nominal", "title": "stages (summed per kind)"},
        },
    }
    (ROOT / "plots" / "scale.png").write_bytes(vl_convert.vegalite_to_png(json.dumps(spec), scale=1.5))


def main() -> None:
    pipeline_figures()
    if any(RESULTS.glob("scale*.json")):
        scale_figure()


if __name__ == "__main__":
    main()
