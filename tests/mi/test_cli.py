"""``python -m infossl.mi``: each bad input is one line on stderr and exit 2, with nothing written;
a good input prints one line whose estimate is the JSON's."""

import json
import subprocess
import sys

import numpy as np
import pytest

from infossl.mi.__main__ import main


def _save(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize(
    "x, y, flags, message",
    [
        (np.array([[0.0], [np.nan]] * 300), np.zeros((600, 1)), [], "x has 300 non-finite"),
        (np.ones((600, 2)), np.ones((500, 2)), [], "x has 600 samples and y has 500"),
        (np.random.rand(100, 2), np.random.rand(100, 2), [], "fewer than batch_size 256"),
        (np.random.rand(600, 2), np.random.rand(600, 2), ["--estimator", "ksg"], "unknown estim"),
        (np.random.rand(600, 2), np.random.rand(600, 2), ["--preprocess", "log"], "preprocess"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, x, y, flags, message):
    out_json = tmp_path / "res.json"
    argv = [_save(tmp_path, "x", x), _save(tmp_path, "y", y), *flags, "--json", str(out_json)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not out_json.exists()


def test_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.npy"), str(tmp_path / "nope.npy")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot read" in err


def test_subprocess_bad_flag_exits_2_without_traceback(tmp_path):
    x = _save(tmp_path, "x", np.zeros((10, 1)))
    proc = subprocess.run(
        [sys.executable, "-m", "infossl.mi", x, x, "--steps", "many"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_good_input_prints_the_estimate_it_writes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 1))
    y = x + rng.standard_normal((400, 1))  # I = 0.5 log 2 = 0.347 nats
    out_json = tmp_path / "res.json"
    argv = [_save(tmp_path, "x", x), _save(tmp_path, "y", y), "--estimator", "infonce"]
    argv += ["--steps", "60", "--batch-size", "64", "--no-progress", "--json", str(out_json)]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    res = json.loads(out_json.read_text())
    assert line.startswith(f"I(X;Y) = {res['estimate']:.4f} +- {res['stderr']:.4f} nats")
    assert res["settings"]["n_train"] == 200 and len(res["curve"]["heldout"]) >= 1
    assert res["settings"]["anchor"] == "gaussian" and res["curve"]["step"] == [0, 60]


def test_anchor_none_trains_the_network_alone_and_a_bad_anchor_exits_2(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 1))
    paths = [_save(tmp_path, "x", x), _save(tmp_path, "y", x + rng.standard_normal((400, 1)))]
    out_json = tmp_path / "res.json"
    flags = ["--steps", "60", "--batch-size", "64", "--no-progress", "--json", str(out_json)]
    assert main([*paths, "--anchor", "none", *flags]) == 0
    res = json.loads(out_json.read_text())
    assert res["settings"]["anchor"] is None and res["curve"]["step"] == [60]
    capsys.readouterr()
    out_json.unlink()
    with pytest.raises(SystemExit) as exit_info:
        main([*paths, "--anchor", "cca", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--anchor" in err and not out_json.exists()
