"""eval_linear.py end to end: learning beats random init, labelled outputs, bad input."""

import json
import os

import pytest
import torch
from train_helpers import assert_one_line_error, run_script, tensorboard_scalars, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = train(root, "learn", "--method", "infonce", "--epochs", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "learn"


def _evaluate(ckpt, *args):
    result = run_script(
        "eval_linear.py", "--ckpt", str(ckpt), "--epochs", "30", "--num-workers", "0", *args
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_pretraining_beats_random_init_and_outputs_are_labelled(pretrained):
    ckpt = pretrained / "checkpoints" / "last.ckpt"
    _evaluate(ckpt)
    _evaluate(ckpt, "--random-init")
    trained = json.loads((pretrained / "eval" / "digits_linear_last.json").read_text())
    random = json.loads((pretrained / "eval" / "digits_linear_random_init.json").read_text())
    protocols = trained["protocols"]
    assert set(protocols) == {
        "offline linear probe",
        "kNN k=20",
        "kNN k=200",
        "online probe during pretraining",
    }
    top1 = {name: entry["top1"] for name, entry in protocols.items()}
    base = {name: entry["top1"] for name, entry in random["protocols"].items()}
    # Measured on this setup (8 epochs, ResNet-9 at 1/8 width): about +8 linear, +12 kNN-20.
    assert top1["offline linear probe"] >= base["offline linear probe"] + 0.03
    assert top1["kNN k=20"] >= base["kNN k=20"] + 0.05
    assert top1["kNN k=200"] >= base["kNN k=200"] + 0.10
    assert top1["online probe during pretraining"] is not None
    assert protocols["kNN k=20"]["settings"]["temperature"] == 0.07
    assert 0 < protocols["offline linear probe"]["top5"] <= 1
    scalars = tensorboard_scalars(pretrained)
    assert "eval/digits/offline_linear_probe/top1" in scalars
    assert "eval/digits/kNN_k20/top1" in scalars
    # The 2-D map of the 360 validation features and the projector, one label per point.
    assert (pretrained / "eval" / "digits_linear_last_embedding_pca.png").is_file()
    assert (pretrained / "eval" / "digits_linear_random_init_embedding_pca.png").is_file()
    assert trained["embedding_maps"]["projector_points"] == trained["num_val"] == 360
    step = f"{trained['pretraining_step']:05d}"
    labels = (pretrained / step / "digits_linear_last_val_features" / "metadata.tsv").read_text()
    assert sorted(set(labels.split())) == [str(c) for c in range(10)]
    assert len(labels.splitlines()) == 360
    assert "projector_points" not in random["embedding_maps"]  # random init: no TensorBoard
    # The baseline was pretrained by nothing; it names the checkpoint it took its shape from.
    steps = 8 * (1437 // 64)
    assert trained["pretraining_method"] == "infonce" and trained["pretraining_step"] == steps
    assert "architecture_from" not in trained and trained["random_init"] is False
    assert random["random_init"] is True
    assert random["pretraining_method"] is None and random["pretraining_step"] is None
    assert random["architecture_from"] == {
        "checkpoint": str(ckpt),
        "method": "infonce",
        "step": steps,
        "backbone": "lightly:resnet-9",
        "width": 0.125,
    }
    # 360 validation samples of 64-d features: the covariance rank can reach 64.
    assert trained["diagnostics"]["covariance_rank_max"] == 64.0
    assert 1 <= trained["diagnostics"]["covariance_rank"] <= 64


def test_collapse_diagnostics_are_logged_during_pretraining(pretrained):
    scalars = tensorboard_scalars(pretrained)
    for space in ("features", "embeddings"):
        for metric in (
            "effective_rank",
            "covariance_rank",
            "alignment",
            "uniformity",
            "std_l2_normalized",
        ):
            assert f"diag/{space}/{metric}" in scalars
    # A healthy run keeps its embeddings spread: effective rank well above 1 of 32 dims.
    assert scalars["diag/embeddings/effective_rank"][-1][1] > 4
    # diagnostics.num_samples=64 (TINY): the centred 64 x 64 feature matrix reaches rank 63 at
    # most, which the cap beside the rank says.
    assert scalars["diag/features/covariance_rank_max"][-1][1] == 63.0
    assert scalars["diag/embeddings/covariance_rank_max"][-1][1] == 32.0
    assert scalars["diag/features/covariance_rank"][-1][1] <= 63.0
    # ... and its backbone features stay well above the collapse warning's 0.05 x 63 = 3.15
    # (measured: 23.8 after 8 epochs).
    assert scalars["diag/features/effective_rank"][-1][1] > 5 * 0.05 * 63


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_bad_input_is_one_line_exit_2(tmp_path, pretrained):
    missing = run_script("eval_linear.py", "--ckpt", str(tmp_path / "missing.ckpt"))
    assert_one_line_error(missing, "missing.ckpt", "does not exist")

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert_one_line_error(run_script("eval_linear.py", "--ckpt", str(text)), "not a checkpoint")

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Exploit()}, evil)
    result = run_script("eval_linear.py", "--ckpt", str(evil))
    assert_one_line_error(result, "refusing to load", "pickled code")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()

    flat = tmp_path / "flat"
    flat.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(flat / "a.png")
    ckpt = str(pretrained / "checkpoints" / "last.ckpt")
    result = run_script(
        "eval_linear.py", "--ckpt", ckpt, "--data", "folder", "--data-dir", str(flat)
    )
    assert_one_line_error(result, "cannot infer the number of classes")

    result = run_script("eval_linear.py", "--ckpt", ckpt, "--gpus", "2")
    assert_one_line_error(result, "2 CUDA GPU")
