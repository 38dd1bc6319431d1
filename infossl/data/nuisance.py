"""A nuisance that is easy to learn and useless for the label: a random colour tint per image.

KNIFE's fair-classification and domain-adaptation experiments (Pichler et al., ICLR 2022;
g-pichler/knife) minimise I(Z; s) for a nuisance s the encoder can see but the task does not
need. Offline, digits get one: each image is tinted with one of ``num_values`` colours, drawn
uniformly at random and independently of the label, so s is trivially predictable from the
pixels (the colour) and carries no information about the digit.
"""

from __future__ import annotations

import torch

# RGB multipliers: red, green, blue, yellow, magenta, cyan (as many as num_values asks for).
TINTS = torch.tensor(
    [
        [1.0, 0.2, 0.2],
        [0.2, 1.0, 0.2],
        [0.2, 0.2, 1.0],
        [1.0, 1.0, 0.2],
        [1.0, 0.2, 1.0],
        [0.2, 1.0, 1.0],
    ]
)


def tint_nuisance(
    images: torch.Tensor, num_values: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tint (N, 3, H, W) images in [-1, 1] with a random colour each; returns (tinted, s).

    s ~ Uniform{0, ..., num_values - 1}, drawn from its own generator (``seed``), so it is
    independent of the labels and of the training order. The tint scales the brightness above
    black (-1) per channel: the digit's shape is unchanged, only its colour says s.
    """
    if not 2 <= num_values <= len(TINTS):
        raise ValueError(f"num_values must be in 2..{len(TINTS)}, got {num_values}")
    s = torch.randint(num_values, (images.shape[0],), generator=torch.Generator().manual_seed(seed))
    tint = TINTS[:num_values][s].to(images)[:, :, None, None]
    return (images + 1.0) * tint - 1.0, s
