"""Render README's figure, plots/val_loss.png, from the committed training histories.

    pip install vl-convert-python==1.9.0   # a docs-only tool, deliberately not in requirements.txt
    python bench/readme_plot.py

The data are `dvc plots show --json`'s, re-drawn with one colour per model.
"""

import json
import subprocess

import vl_convert

PLOT = "Validation MSE by epoch"
ORDER = ["global_mean", "biases", "mf", "mf_bias", "collab_fnet"]


def main() -> None:
    shown = json.loads(subprocess.run(["dvc", "plots", "show", "--json"], capture_output=True, check=True).stdout)
    values = shown["data"][PLOT][0]["content"]["data"]["values"]
    spec = {
        "data": {"values": [dict(v, model=v["filename"].removesuffix(".csv")) for v in values]},
        "title": f"{PLOT} (dvc plots show: plots/history/*.csv)",
        "width": 520,
        "height": 300,
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative"},
            "y": {"field": "val_loss", "type": "quantitative", "title": "validation MSE", "scale": {"zero": False}},
            "color": {"field": "model", "type": "nominal", "sort": ORDER},
        },
    }
    with open("plots/val_loss.png", "wb") as f:
        f.write(vl_convert.vegalite_to_png(json.dumps(spec), scale=1.5))


if __name__ == "__main__":
    main()
