"""The tint nuisance: independent of the label, and plainly visible in the pixels."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from benchmarks._downstream_common import image_tensors
from infossl.data.nuisance import tint_nuisance


def test_tint_is_independent_of_the_label_and_a_probe_on_raw_pixels_reads_it():
    images, labels = image_tensors("digits", "./data", "train", 8)
    tinted, s = tint_nuisance(images, 4, seed=0)
    # empirical I(s; y) from the contingency table: near 0 (a plug-in estimate of 4 x 10 cells
    # on 1 437 samples is biased up by about (4-1)(10-1) / (2 N) = 0.009 nats)
    joint = np.histogram2d(s.numpy(), labels.numpy(), bins=(4, 10))[0] / len(s)
    ps, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (ps @ py)[nz])).sum())
    assert mi < 0.03
    # the digit's shape is unchanged: channel-wise tint of the brightness above black
    assert torch.allclose((tinted[s == 0, 0] + 1), (images[s == 0, 0] + 1))
    x = tinted.flatten(1).numpy()
    probe = LogisticRegression(max_iter=500).fit(x[:1000], s[:1000].numpy())
    assert probe.score(x[1000:], s[1000:].numpy()) > 0.95  # chance is 0.25
