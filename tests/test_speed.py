"""Speed switches: device defaults, the same loss and gradients with channels_last and
torch.compile as on the plain path, no host sync in a step's tensor code, and GPU augmentation
wired into the data module."""

import pytest
import torch
from sync_probe import HostSyncProbe

from infossl import config as C
from infossl.data.datamodule import SSLDataModule
from infossl.methods import METHODS
from infossl.speed import apply_to_model, resolve_speed

torch.set_num_threads(1)

TINY = [
    "backbone.name=lightly:resnet-9",
    "backbone.width=0.125",
    "projector.hidden_dim=64",
    "projector.output_dim=32",
    "data.num_workers=0",
]


def _cfg(*overrides, method="infonce"):
    cfg = C.apply_overrides(C.default_config(method, "digits"), [*TINY, *overrides])
    cfg = C.resolve_views(cfg)
    C.validate(cfg)
    return C.to_plain(cfg)


def test_auto_resolves_to_the_fast_choice_for_each_device():
    cfg = _cfg()
    cpu, gpu = resolve_speed(cfg, "cpu"), resolve_speed(cfg, "gpu")
    assert cpu["augment_on"] == "cpu" and gpu["augment_on"] == "gpu"  # 16 px digits
    assert (cpu["pin_memory"], gpu["pin_memory"]) == (False, True)
    assert (cpu["prefetch_factor"], gpu["prefetch_factor"]) == (2, 4)
    assert (cpu["cudnn_benchmark"], gpu["cudnn_benchmark"]) == (False, True)
    assert cpu["channels_last"] and gpu["channels_last"]
    assert not cpu["compile"] and cpu["persistent_workers"]
    # Large images keep the CPU pipeline; deterministic runs keep cuDNN's fixed algorithms.
    assert resolve_speed(_cfg("data.image_size=96"), "gpu")["augment_on"] == "cpu"
    folder = _cfg()
    folder["data"]["name"] = "folder"  # mixed-size images: resized before batched crops
    assert resolve_speed(folder, "gpu")["augment_on"] == "cpu"
    assert not resolve_speed(_cfg("trainer.deterministic=true"), "gpu")["cudnn_benchmark"]
    # Explicit values win over auto.
    assert resolve_speed(_cfg("data.augment_on=gpu"), "cpu")["augment_on"] == "gpu"
    assert not resolve_speed(_cfg("trainer.channels_last=false"), "gpu")["channels_last"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.augment_on=tpu", "data.augment_on='tpu' is not valid: it must be one of auto, cpu"),
        ("data.prefetch_factor=0", "data.prefetch_factor=0 .* must be auto or an integer >= 1"),
        ("trainer.channels_last=maybe", "channels_last='maybe' .* must be auto or true or false"),
        ("trainer.compile=fast", "trainer.compile='fast' is not valid: it must be true or false"),
    ],
)
def test_bad_speed_values_are_config_errors(override, message):
    with pytest.raises(C.ConfigError, match=message):
        _cfg(override)


def _loss_and_grads(method, views, labels):
    method.zero_grad()
    if method.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    features = [method.backbone(v) for v in views]
    embeddings = [method.projector(f) for f in features]
    loss = method.loss_terms(features, embeddings, labels)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("method_name", ["infonce", "corinfomax"])
def test_channels_last_and_compile_give_the_plain_loss_and_gradients(method_name):
    cfg = _cfg(method=method_name)
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(16, 3, 16, 16, generator=g) for _ in range(2)]
    labels = torch.randint(0, 10, (16,), generator=g)
    results = {}
    for name, switches in {
        "plain": {"channels_last": False, "compile": False},
        "channels_last": {"channels_last": True, "compile": False},
        # aot_eager runs dynamo and AOTAutograd (the graph capture and the traced backward)
        # without inductor's C++ build; the benchmark measures inductor itself.
        "compile": {"channels_last": False, "compile": True},
        "both": {"channels_last": True, "compile": True},
    }.items():
        torch.manual_seed(0)
        method = METHODS[method_name](cfg, 10)
        method.train()
        speed = {**switches, "compile_backend": "aot_eager"}
        results[name] = _loss_and_grads(apply_to_model(method, speed), views, labels)
        if switches["channels_last"]:
            conv = method.backbone[0]
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    loss, grads = results["plain"]
    assert torch.isfinite(loss)
    for name in ("channels_last", "compile", "both"):
        other_loss, other_grads = results[name]
        torch.testing.assert_close(other_loss, loss, rtol=1e-5, atol=1e-5, msg=name)
        assert other_grads.keys() == grads.keys()
        for key in grads:
            torch.testing.assert_close(other_grads[key], grads[key], rtol=1e-3, atol=1e-5)


def test_compiled_backbone_keeps_the_checkpoint_keys():
    cfg = _cfg()
    plain = METHODS["infonce"](cfg, 10)
    compiled = apply_to_model(
        METHODS["infonce"](cfg, 10),
        {"channels_last": True, "compile": True, "compile_backend": "aot_eager"},
    )
    assert list(compiled.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(compiled.state_dict())  # and the values load into a plain model


@pytest.mark.parametrize("method_name", ["infonce", "corinfomax"])
def test_a_steps_tensor_code_never_syncs_the_host(method_name):
    """Forward, loss terms, online probe, non-finite guard and backward: no .item(), no
    boolean indexing, no nonzero (Lightning's own logging reads values at logging steps)."""
    cfg = _cfg(method=method_name)
    method = METHODS[method_name](cfg, 10)
    views = [torch.randn(16, 3, 16, 16) for _ in range(2)]
    labels = torch.tensor([-1, -1, *range(10), 0, 1, 2, 3])  # two unlabelled samples
    with HostSyncProbe() as probe:
        features = [method.backbone(v) for v in views]
        embeddings = [method.projector(f) for f in features]
        terms = method.loss_terms(features, embeddings, labels)
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        probe_loss = method._online_probe_loss(features[0].detach(), labels, logs)
        method.nonfinite_guard.record(terms["loss"], logs, step=3)
        (terms["loss"] + probe_loss).backward()
    assert probe.syncs == []
    # The probe's masked loss equals cross-entropy over the labelled samples only.
    logits = method.online_probe(features[0].detach())
    expected = torch.nn.functional.cross_entropy(logits[2:], labels[2:])
    torch.testing.assert_close(logs["train/online_probe_loss"], expected.detach())
    top1 = (logits[2:].argmax(1) == labels[2:]).double().mean()
    assert float(logs["train/online_top1"]) == pytest.approx(float(top1))


class _Training:
    training = True
    num_devices = 1


def test_gpu_augmentation_is_wired_into_the_data_module():
    cfg = _cfg("data.augment_on=gpu", "data.batch_size=8")
    dm = SSLDataModule(cfg, resolve_speed(cfg, "cpu"))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (8, 3, 32, 32)  # native digits
    dm.trainer = _Training()
    views, labels = dm.on_after_batch_transfer(batch, 0)[:2]
    assert len(views) == 2 and labels.shape == (8,)
    mean = torch.tensor(dm.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.std).view(1, 3, 1, 1)
    for view in views:
        assert view.shape == (8, 3, 16, 16) and view.dtype == torch.float32
        pixels = view * std + mean
        assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    # Processes draw different parameters (seed_everything gives every DDP process the same
    # RNG), and the same rank from the same RNG state draws the same views again.
    state = torch.get_rng_state()
    rank0 = dm.augment_batch(batch, rank=0)[0][0]
    torch.set_rng_state(state)
    rank1 = dm.augment_batch(batch, rank=1)[0][0]
    torch.set_rng_state(state)
    again = dm.augment_batch(batch, rank=0)[0][0]
    assert torch.equal(rank0, again) and not torch.equal(rank0, rank1)
    # Validation batches pass unchanged (already normalised float images).
    dm.trainer.training = False
    val = next(iter(dm.val_dataloader()))
    assert dm.on_after_batch_transfer(val, 0) is val
    # The CPU path yields the views from the loader itself.
    cpu = SSLDataModule(_cfg("data.batch_size=8"))
    cpu.setup("fit")
    views = next(iter(cpu.train_dataloader()))[0]
    assert [v.shape for v in views] == [(8, 3, 16, 16)] * 2
