"""Every bad input is one line on stderr, exit code 2, and writes nothing.

Cases run train.py's ``main(argv)`` in this process (the script's own error handling, through
``infossl.cli.run_cli``): one import of torch and Lightning for all of them, milliseconds each,
instead of a fresh interpreter per case. Each case checks the exit code, that stderr is one
line naming what is wrong, that no run directory appeared and that the existing run's files are
byte-for-byte as before. Besides the listed cases, every key of the schema
(infossl/config_schema.py) and every loss key of every method YAML gets a wrong-type case, so a
new key is covered without anyone writing its case.
"""

from __future__ import annotations

import errno
import os
import shlex
import sys

import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image
from train_helpers import TINY, snapshot

import train
from infossl import config as C
from infossl import config_schema as S
from infossl.cli import run_cli

BASE = ["--data", "digits", "--num-workers", "0"]


def run_main(capsys, args: list[str], script=train) -> tuple[int, list[str]]:
    old = sys.argv
    sys.argv = [f"{script.__name__}.py"]
    try:
        code = run_cli(lambda: script.main(args))
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    finally:
        sys.argv = old
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished one-epoch run, trained in this process, that no bad input may touch."""
    root = tmp_path_factory.mktemp("runs")
    args = ["--method", "infonce", *BASE, "--run-dir", str(root), "--name", "keep", *TINY]
    assert train.main([*args, "--epochs", "1", "data.train_fraction=0.1"]) == 0
    return root


def assert_refused(capsys, root, args: list[str], *needles: str) -> str:
    before = snapshot(root)
    code, lines = run_main(capsys, [*args, "--run-dir", str(root)])
    assert code == 2, (args, lines)
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert snapshot(root) == before, "a refused input changed files"
    # .keep.lock is the existing run's lock file (infossl/reliability/run_lock.py), kept on disk
    left = sorted(p.name for p in root.iterdir() if p.name != ".keep.lock")
    assert left == ["keep"], "a refused input left a directory"
    return lines[0]


FLAT = "FLAT_FOLDER"  # replaced by a folder of three images without class sub-folders
CASES = [
    # wrong types
    ("optimizer.lr=abc", "optimizer.lr='abc'"),
    ("trainer.epochs=abc", "trainer.epochs='abc'"),
    ("data.batch_size=abc", "data.batch_size='abc'"),
    ("loss.temperature=[1,2]", "loss.temperature=list"),
    ("optimizer=5", "optimizer=5 is not valid: it must be a mapping"),
    ("data.views=[]", "data.views=list"),
    ("--seed 18446744073709551616", "seed=18446744073709551616", "<= 4294967295"),
    ("--epochs abc", "argument --epochs: invalid int value"),
    # out of range
    ("optimizer.lr=-1", "optimizer.lr=-1", "> 0"),
    ("data.image_size=0", "data.image_size=0"),
    ("backbone.width=0", "backbone.width=0"),
    ("optimizer.warmup_epochs=-5", "optimizer.warmup_epochs=-5"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0"),
    ("--num-workers -1", "data.num_workers=-1"),
    ("training.skip_nonfinite=-1", "training.skip_nonfinite=-1"),
    ("trainer.ddp_timeout_s=-1", "trainer.ddp_timeout_s=-1"),
    ("--seed -1", "seed=-1"),
    ("loss.temperature=nan", "loss.temperature='nan'"),
    ("loss.temperature=-1", "loss.temperature=-1", "> 0"),
    ("--batch-size 1", "batch size 1 is too small"),
    ("--epochs 2 trainer.stop_after_epoch=3", "stop_after_epoch=3 is after the last epoch"),
    ("--method corinfomax loss.la_R=1.0", "loss.la_R=1.0", "< 1"),
    ("--method dml-ce loss.label_smoothing=2", "loss.label_smoothing=2"),
    ("--method dml-pairwise loss.triplet.margin=-1", "loss.triplet.margin=-1"),
    ("data.views.0.hflip_p=2", "data.views"),
    ("--devices 2 --accelerator cpu training.skip_nonfinite=1", "works on one process only"),
    # bad names
    ("optimizer.name=nosuch", "optimizer.name='nosuch'", "sgd, lars, adamw"),
    ("--method remine loss.estimator=mien", "loss.estimator='mien'", "smile"),
    ("data.on_bad_image=nosuch", "data.on_bad_image='nosuch'"),
    ("'regularizers=[{name: knife_entropy, direction: maximise}]'", "regularizers[0].direction"),
    ("'regularizers=[{name: knife_entropy, modez: 3}]'", "unknown key regularizers[0].modez"),
    ("'regularizers=[{name: knife_mi, weight: 0.1}]'", "knife_mi", "num_classes"),
    ("'regularizers=[{name: knife_mi, nuisance: domain}]'", "regularizers[0].nuisance='domain'"),
    ("'regularizers=[{name: knife_mi, fit_steps: 0}]'", "regularizers[0].fit_steps=0", ">= 1"),
    (
        "'regularizers=[{name: knife_mi, nuisance: data}]'",
        "regularizers[0]: nuisance: data needs a dataset nuisance",
        "data.nuisance=tint",
    ),
    (
        "data.nuisance=tint 'regularizers=[{name: knife_mi, nuisance: data, num_classes: 3}]'",
        "regularizers[0].num_classes=3 is fewer than the data.nuisance_values=4",
    ),
    ("data.nuisance=stripes", "data.nuisance='stripes'", "tint"),
    ("data.nuisance=tint data.nuisance_values=7", "data.nuisance_values=7", "<= 6"),
    (f"data.nuisance=tint --data folder --data-dir {FLAT}", "not available for --data folder"),
    ("--method dml-ce data.augmentation=digits", "one augmented view", "makes 2"),
    ("--method dml-pairwise loss.name=pce", "not implemented"),
    ("data.augmentation=nosuch", "unknown augmentation 'nosuch'"),
    ("--backbone nosuch", "unknown backbone 'nosuch'"),
    ("--backbone timm:nosuch", "unknown timm model 'nosuch'"),
    ("--precision 8", "trainer.precision='8'"),
    ("--accelerator tpu", "trainer.accelerator='tpu'"),
    ("loss.nosuch=1", "unknown config key 'loss.nosuch'"),
    # interpolations and files
    ("seed='${nope}'", "config key seed", "Interpolation key 'nope' not found"),
    ("seed='${seed}'", "config key seed", "Recursive interpolation"),
    ("optimizer.lr='${oc.env:INFOSSL_UNSET_VAR}'", "optimizer.lr", "INFOSSL_UNSET_VAR"),
    ("--config BINARY", "is not a text (UTF-8) YAML file"),
    ("--config ANCHOR", "refers to itself"),
    ("--config LISTFILE", "must hold a mapping"),
    ("--config nowhere.yaml", "nowhere.yaml does not exist"),
    # flags and names, as a careless user types them
    ("--method simclrr", "unknown method 'simclrr'", "infonce"),
    ("--data mnist", "unknown dataset 'mnist'"),
    ("optimizer.lrr=1", "unknown config key", "optimizer.lrr"),
    ("optimizer.lr", "malformed override", "key=value"),
    ("--gpus 8", "8 CUDA GPU", "has 0"),
    ("--resume nowhere.ckpt", "nowhere.ckpt", "no such"),
    ("--bogus-flag", "unrecognized arguments: --bogus-flag"),
    ("--name keep", "already exists", "--resume auto"),
    # runs that would train nothing
    ("--batch-size 2000", "holds 1437 image(s)", "train nothing"),
    ("data.train_fraction=0", "data.train_fraction=0"),
    ("data.train_fraction=-1", "data.train_fraction=-1"),
    ("data.train_fraction=0.001", "holds 1 image(s)", "train nothing"),
    (f"--data folder --data-dir {FLAT} --batch-size 8", "holds 3 image(s)", "train nothing"),
]


def _files(tmp_path) -> dict[str, str]:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    anchor = tmp_path / "anchor.yaml"
    anchor.write_text("trainer: &t\n  epochs: *t\n")
    listfile = tmp_path / "list.yaml"
    listfile.write_text("- 1\n- 2\n")
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 60, 0, 0)).save(flat / f"{i}.png")
    return {
        "BINARY": str(binary),
        "ANCHOR": str(anchor),
        "LISTFILE": str(listfile),
        FLAT: str(flat),
    }


@pytest.mark.parametrize(
    ("argv", "needle"), [(c[0], c[1:]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_before_anything_is_written(capsys, existing, tmp_path, argv, needle):
    args = shlex.split(argv)
    for name, value in _files(tmp_path).items():
        args = [value if a == name else a for a in args]
    if "--method" not in args:
        args = ["--method", "infonce", *args]
    assert_refused(capsys, existing, [*BASE, "--name", "new", *args], *needle)


def _wrong_values(annotation) -> list[str]:
    """Override values of the wrong type for a key: the first the schema refuses."""
    return [v for v in ("abc", "[1, 2]", "5", "{a: 1}") if not _accepts(annotation, v)][:1]


def _accepts(annotation, text: str) -> bool:
    value = OmegaConf.to_container(OmegaConf.from_dotlist([f"k={text}"]))["k"]
    try:
        S.check(value, annotation, "k")
        return True
    except C.ConfigError:
        return False


# Keys the method sets itself (the method name) or whose value is a file name checked when
# the file is read (data.augmentation: its own case above); every other key of base.yaml.
SCHEMA_CASES = [
    (f"{key}={value}", key)
    for key, annotation in S.leaves(S.Config)
    if key not in ("method", "data.augmentation")
    for value in _wrong_values(annotation)
]
VIEW = OmegaConf.to_container(OmegaConf.load(C.CONFIG_DIR / "augmentations" / "digits.yaml"))[0]
VIEW_CASES = [
    (key, value) for key, annotation in S.leaves(S.View) for value in _wrong_values(annotation)
]


def _loss_cases() -> list[tuple[str, str, str]]:
    """A wrong-type override for every loss key of every method YAML (the first key of a
    nested mapping)."""
    cases = []
    for method in C.available("methods"):
        for key, default in C.method_loss_defaults(method).items():
            if isinstance(default, dict):
                sub, default = next(iter(default.items()))
                key = f"{key}.{sub}"
            wrong = "[1, 2]" if isinstance(default, str) else "abc"
            cases.append((method, f"loss.{key}={wrong}", f"loss.{key}"))
    return cases


LOSS_CASES = _loss_cases()


def test_every_schema_key_has_a_wrong_type_case():
    keys = {key for _, key in SCHEMA_CASES}
    assert len(keys) == len(S.leaves(S.Config)) - 2
    assert {key for key, _ in VIEW_CASES} == {key for key, _ in S.leaves(S.View)}


@pytest.mark.parametrize(("override", "key"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_wrong_type_of_every_key_is_refused(capsys, existing, override, key):
    args = ["--method", "infonce", *BASE, "--name", "new", override]
    line = assert_refused(capsys, existing, args)
    assert key in line or key.split(".")[0] in line, line


@pytest.mark.parametrize(("key", "value"), VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_wrong_type_of_every_view_key_is_refused(capsys, existing, key, value):
    view = {**VIEW, key: yaml.safe_load(value)}
    flow = yaml.safe_dump([view], default_flow_style=True, width=10**6).strip()
    args = ["--method", "infonce", *BASE, "--name", "new", f"data.views={flow}"]
    assert_refused(capsys, existing, args, f"data.views[0].{key}")


@pytest.mark.parametrize(
    ("method", "override", "key"), LOSS_CASES, ids=[f"{m}:{o}" for m, o, _ in LOSS_CASES]
)
def test_wrong_type_of_every_method_loss_key_is_refused(capsys, existing, method, override, key):
    args = ["--method", method, *BASE, "--name", "new", override]
    assert_refused(capsys, existing, args, key)


def test_resume_with_a_changed_architecture_names_the_keys_and_keeps_the_run(capsys, existing):
    args = ["--name", "keep", "--resume", "auto", *BASE, *TINY, "backbone.width=0.25"]
    line = assert_refused(capsys, existing, args, "cannot resume", "backbone.width: 0.125 -> 0.25")
    assert "resume without changing them" in line


def test_read_only_run_dir_is_refused_first(capsys, existing, tmp_path, monkeypatch):
    # Root ignores permission bits, so a read-only file system is simulated where it is asked.
    real = os.access
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and str(p) != str(ro))
    code, lines = run_main(capsys, ["--method", "infonce", *BASE, "--run-dir", str(ro / "runs")])
    assert code == 2 and len(lines) == 1, lines
    assert f"{ro} is not writable" in lines[0] and "choose another --run-dir" in lines[0]
    assert list(ro.iterdir()) == []


def test_a_write_refused_by_the_file_system_is_one_line(capsys, tmp_path, monkeypatch):
    import infossl.training as training

    def refuse(run_dir):
        raise OSError(errno.EROFS, "Read-only file system", str(run_dir))

    monkeypatch.setattr(training, "create_run_dir", refuse)
    code, lines = run_main(
        capsys, ["--method", "infonce", *BASE, *TINY, "--run-dir", str(tmp_path), "--name", "x"]
    )
    assert code == 2 and len(lines) == 1, lines
    assert "Read-only file system" in lines[0] and "choose another --run-dir" in lines[0]


# ---- eval_linear.py ------------------------------------------------------------------------
EVAL_CASES = [
    ("--epochs 0", "epochs=0"),
    ("--batch-size 0", "batch_size=0"),
    ("--lr -1", "lr=-1.0", "> 0"),
    ("--lr nan", "lr=nan"),
    ("--lr inf", "lr=inf"),
    ("--num-workers -1", "num_workers=-1"),
    ("--seed -1", "seed=-1"),
    ("--recall-k 0", "--recall-k[0]=0"),
    ("--precision 8", "precision='8'"),
    ("--gpus -1", "--gpus -1"),
]


def _edited_checkpoint(existing, tmp_path, edit) -> str:
    import torch

    state = torch.load(existing / "keep" / "checkpoints" / "last.ckpt", weights_only=True)
    edit(state)
    path = tmp_path / "edited.ckpt"
    torch.save(state, path)
    return str(path)


def _drop_image_size(state):
    del state["hyper_parameters"]["cfg"]["data"]["image_size"]


def _set(key, value):
    def edit(state):
        section, leaf = key.split(".")
        state["hyper_parameters"]["cfg"][section][leaf] = value

    return edit


CHECKPOINT_CASES = [
    (_drop_image_size, ["incomplete", "no data.image_size"]),
    (_set("backbone.width", 0.25), ["backbone weights do not match its config", "width 0.25"]),
    (_set("data.image_size", 0), ["training config is unusable", "data.image_size=0"]),
    (_set("backbone.small_images", "maybe"), ["backbone.small_images='maybe'"]),
]


def _eval(capsys, existing, args):
    import eval_linear

    ckpt = str(existing / "keep" / "checkpoints" / "last.ckpt")
    before = snapshot(existing)
    code, lines = run_main(capsys, ["--ckpt", ckpt, "--num-workers", "0", *args], eval_linear)
    assert snapshot(existing) == before, "a refused evaluation changed files"
    return code, lines


@pytest.mark.parametrize(
    ("argv", "needle"), [(c[0], c[1:]) for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES]
)
def test_eval_flags_are_checked_before_anything_runs(capsys, existing, argv, needle):
    code, lines = _eval(capsys, existing, shlex.split(argv))
    assert code == 2 and len(lines) == 1, lines
    assert all(n in lines[0] for n in needle), lines[0]


@pytest.mark.parametrize(
    ("edit", "needles"), CHECKPOINT_CASES, ids=lambda c: getattr(c, "__name__", None)
)
def test_eval_refuses_a_checkpoint_it_cannot_use(capsys, existing, tmp_path, edit, needles):
    import eval_linear

    ckpt = _edited_checkpoint(existing, tmp_path, edit)
    code, lines = run_main(capsys, ["--ckpt", ckpt, "--num-workers", "0"], eval_linear)
    assert code == 2 and len(lines) == 1, lines
    assert all(n in lines[0] for n in needles), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.ckpt"]


def test_eval_of_a_folder_with_an_unreadable_image_stops_naming_it(capsys, existing, tmp_path):
    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 90 * c, 0)).save(tmp_path / f"c{c}" / f"{i}.png")
    bad = tmp_path / "c1" / "9_notes.png"
    bad.write_text("not an image")
    code, lines = _eval(capsys, existing, ["--data", "folder", "--data-dir", str(tmp_path)])
    assert code == 1 and len(lines) == 1, lines
    assert f"unreadable image {bad}" in lines[0] and "remove or fix it" in lines[0]
    assert not (tmp_path / "eval").exists()
