"""eval_linear.py on a run trained with data.nuisance=tint: the images training saw, and the
nuisance probe (KNIFE's leakage measure: how much of s a linear probe reads from the features)."""

import json

import pytest
import torch
from train_helpers import tensorboard_scalars, train

from infossl.cli_eval import main as eval_main
from infossl.data.datamodule import SSLDataModule
from infossl.data.datasets import DIGITS_STATS
from infossl.data.nuisance import TINTS, draw_nuisance
from infossl.data.transforms import build_crop_flip_transform, build_eval_transform
from infossl.eval.offline import eval_dataset, load_pretrained
from infossl.eval.retrieval_protocol import _test_set

pytestmark = pytest.mark.slow

# 1 epoch on 10% of digits (2 steps): the checkpoint only has to exist with its config.
QUICK = ["--method", "infonce", "--epochs", "1", "data.train_fraction=0.1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("tint", ["data.nuisance=tint"]), ("plain", [])):
        result = train(root, name, *QUICK, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
    return root


def _evaluate(ckpt, capsys, *args) -> tuple[dict, str]:
    out = ckpt.parent.parent / "eval" / f"{'random' if args else 'last'}.json"
    argv = ["--ckpt", str(ckpt), "--epochs", "30", "--num-workers", "0", "--out", str(out)]
    assert eval_main([*argv, *args]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _recover_tint(pixels: torch.Tensor) -> torch.Tensor:
    """s from (N, 3, H, W) non-negative pixels: which channels of the brightest pixel per
    channel stand above the midpoint (the tint's 1.0 channels)."""
    peak = pixels.flatten(2).amax(2)
    mid = (peak.amax(1, keepdim=True) + peak.amin(1, keepdim=True)) / 2
    match = ((peak > mid)[:, None, :] == (TINTS[:4] > 0.5)[None]).all(2)
    assert match.sum(1).eq(1).all()
    return match.float().argmax(1)


def test_nuisance_probe_reads_the_tint_from_trained_and_random_features(runs, capsys):
    ckpt = runs / "tint" / "checkpoints" / "last.ckpt"
    trained, console = _evaluate(ckpt, capsys)
    random, random_console = _evaluate(ckpt, capsys, "--random-init")
    for result, text in ((trained, console), (random, random_console)):
        probe = result["protocols"]["nuisance probe"]
        assert probe["chance"] == 0.25  # data.nuisance_values: 4 tints
        # The colour survives any ResNet, even an untrained one: measured 0.978 (trained) and
        # 1.0 (random init) on the 360 validation digits, against 0.25 by chance.
        assert probe["top1"] >= 0.85, probe
        assert probe["settings"]["epochs"] == 30 and probe["settings"]["augment"] == "none"
        line = next(ln for ln in text.splitlines() if ln.startswith("nuisance probe"))
        assert json.loads(line.removeprefix("nuisance probe")) == {
            "top1": round(probe["top1"], 4),
            "chance": 0.25,
        }
        # the label probe still runs, on the same tinted features (10 classes)
        assert result["protocols"]["offline linear probe"]["top1"] > 0.3
    assert "eval/digits/nuisance_probe/top1" in tensorboard_scalars(runs / "tint")


def test_no_nuisance_probe_without_a_nuisance(runs, capsys):
    result, console = _evaluate(runs / "plain" / "checkpoints" / "last.ckpt", capsys)
    assert set(result["protocols"]) == {
        "offline linear probe",
        "kNN k=20",
        "kNN k=200",
        "online probe during pretraining",
    }
    assert "nuisance probe" not in console
    # and its images are the plain digits: (image, label) items
    _, _, cfg, _ = load_pretrained(str(runs / "plain" / "checkpoints" / "last.ckpt"))
    tf = build_eval_transform(cfg["data"]["image_size"], *DIGITS_STATS)
    assert len(eval_dataset(cfg, "digits", "./data", "val", tf, False, None)[0]) == 2


def _datamodule(cfg: dict) -> SSLDataModule:
    datamodule = SSLDataModule(cfg)
    datamodule.setup()
    return datamodule


def test_evaluation_sees_the_tinted_images_training_saw(runs):
    _, _, cfg, _ = load_pretrained(str(runs / "tint" / "checkpoints" / "last.ckpt"))
    assert cfg["data"]["nuisance"] == "tint"
    datamodule = _datamodule(cfg)
    tf = build_eval_transform(cfg["data"]["image_size"], *DIGITS_STATS)  # 16 px on digits
    val = eval_dataset(cfg, "digits", "./data", "val", tf, False, None)
    train_labeled = eval_dataset(cfg, "digits", "./data", "train_labeled", tf, False, None)
    assert torch.equal(val.nuisance, datamodule.val_set.nuisance)
    assert torch.equal(val.nuisance, draw_nuisance(360, 4, seed=1))
    for i in (0, 1, 7, 359):
        image, label, _, s = val[i]
        expected = datamodule.val_set[i]
        assert torch.equal(image, expected[0]) and (label, s) == (expected[1], expected[3])
    # training's set (before its 10% subset): the same s per image, all 1,437
    training = datamodule.train_set.dataset
    assert torch.equal(train_labeled.nuisance, training.nuisance)
    assert torch.equal(train_labeled.nuisance, draw_nuisance(1437, 4, seed=0))
    assert not torch.equal(train_labeled.nuisance[:360], val.nuisance)  # two draws
    # every evaluated image shows its own s
    mean, std = (torch.tensor(v)[:, None, None] for v in DIGITS_STATS)
    pixels = torch.stack([val[i][0] for i in range(len(val))]) * std + mean
    assert torch.equal(_recover_tint(pixels), val.nuisance)


def test_crop_flip_and_retrieval_sets_are_tinted_like_training(runs):
    _, _, cfg, _ = load_pretrained(str(runs / "tint" / "checkpoints" / "last.ckpt"))
    mean, std = (torch.tensor(v)[:, None, None] for v in DIGITS_STATS)
    size = cfg["data"]["image_size"]
    crop_flip = build_crop_flip_transform(size, *DIGITS_STATS)
    augmented = eval_dataset(cfg, "digits", "./data", "train_labeled", crop_flip, False, None)
    items = [augmented[i] for i in range(64)]
    assert [it[3] for it in items] == draw_nuisance(1437, 4, seed=0)[:64].tolist()
    pixels = torch.stack([it[0] for it in items]) * std + mean
    assert torch.equal(_recover_tint(pixels), torch.tensor([it[3] for it in items]))
    # retrieval's test set is training's validation set, also under data.class_split
    tf = build_eval_transform(size, *DIGITS_STATS)
    for class_split in (False, True):
        split_cfg = {**cfg, "data": {**cfg["data"], "class_split": class_split}}
        test_set, _ = _test_set(split_cfg, "digits", "./data", tf, False, None)
        val = _datamodule(split_cfg).val_set
        assert len(test_set) == len(val) == (896 if class_split else 360)  # digits 5-9 of all 1,797
        assert torch.equal(test_set.nuisance, val.nuisance)
        for i in (0, 5, len(val) - 1):
            assert torch.equal(test_set[i][0], val[i][0]) and test_set[i][1:] == val[i][1:]


def test_a_checkpoint_with_an_unknown_nuisance_is_refused(runs):
    from infossl.errors import UserError
    from infossl.eval.offline import _checked_training_config
    from infossl.reliability.checkpoint_io import load_checkpoint_safely

    ckpt = runs / "tint" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint_safely(str(ckpt))
    for key, value, shown in (("nuisance", "blur", "'blur'"), ("nuisance_values", 9, "9")):
        cfg = checkpoint["hyper_parameters"]["cfg"]
        bad = {**cfg, "data": {**cfg["data"], key: value}}
        with pytest.raises(UserError, match=f"unusable: data.{key}.*{shown}"):
            _checked_training_config(str(ckpt), {**checkpoint, "hyper_parameters": {"cfg": bad}})
