"""benchmarks/gpu.py at tiny scale on the CPU: it runs vdir's inversion and edit code under
each memory plan, counts the work in the PassCounter's unit and writes its JSON and table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu  # noqa: E402
from videodirector_cli.diffusion import flops  # noqa: E402
from videodirector_cli.diffusion.architecture import named  # noqa: E402


def test_tiny_run_writes_every_configuration(tmp_path):
    assert gpu.main(["--tiny", "--configs", "fast,lowest", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text())
    table = (tmp_path / "gpu.md").read_text()
    assert [row["config"] for row in result["rows"]] == ["fast", "lowest"]
    assert result["architecture"] == "tiny" and result["device_type"] == "cpu"
    steps = 1 + gpu.TINY["inversion_steps"]
    inner = gpu.TINY["inner_steps"]
    latent_hw = (gpu.TINY["size"] // named("tiny").vae_factor,) * 2
    for row in result["rows"]:
        inversion, edit = row["inversion"], row["edit"]
        assert len(inversion["step_seconds"]) == steps and inversion["seconds_per_step"] > 0
        assert inversion["tflops"] > 0 and edit["tflops"] > 0
        assert inversion["peak_bytes"] is None  # no CUDA here: nothing is made up
        # every inner update ran, charged at the measured backward cost of this plan
        costs = flops.measure_costs(
            named("tiny"),
            gpu.TINY["frames"],
            latent_hw,
            checkpointing=row["plan"]["checkpointing"],
        )
        null_text = inversion["passes"]["by_purpose"]["null-text"]
        assert null_text == pytest.approx(
            steps * (inner * (1 + costs.null_text_backward) + 1), abs=1e-3
        )
        assert inversion["passes"]["by_purpose"]["stdg"] > 0
        assert edit["fe_per_step"] == 4
        assert sum(edit["applied"].values()) > 0  # the edit processors ran
        assert edit["decode"]["frames"] == gpu.TINY["frames"]
        assert row["estimate"]["invert"]["peak_bytes"] > 0 < row["estimate"]["edit"]["peak_bytes"]
        assert f"| {row['config']} |" in table
    fast, lowest = result["rows"][0]["inversion"], result["rows"][1]["inversion"]
    assert lowest["fe_per_step"] > fast["fe_per_step"]  # checkpointing's recompute is work
