"""The contract every registered family keeps (DESIGN.md, "one shape").

Parametrized over the registry: a new family gets all of this by registering its spec.py (with a
``tiny_config`` and the ``tiny_train`` options it trains on). Each test trains or builds the tiny
model through the same library functions the commands use (gencli.training.run, gencli.api).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import gencli
from gencli import registry
from gencli.errors import CapabilityError
from gencli.models.base import GenerativeModel
from gencli.models.spec import CAPABILITIES
from gencli.training import run as runs

FAMILIES = [name for name, spec in registry.FAMILIES.items() if not spec.is_preset]
NAMES = list(registry.FAMILIES)


def _train(name: str, out: Path, steps: int, *, resume: bool = False, seed: int = 0):
    spec = registry.get_family(name)
    tiny = dict(spec.tiny_train)
    data, size = tiny.pop("data", None), tiny.pop("image_size", None)
    prepared = runs.prepare(
        spec, out, steps=steps, data=data, options=tiny, image_size=None if resume else size,
        config=None if resume else spec.tiny_config, resume=resume,
        train={"batch_size": 2, "seed": seed, "save_every": 1000, "log_every": 1, "sample_n": 0})
    prepared.trainer.fit()
    return prepared


def _weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(params=FAMILIES)
def trained(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "run"
    return name, out, _train(name, out, 2)


def test_every_family_declares_a_tiny_setup():
    for name in FAMILIES:
        spec = registry.get_family(name)
        assert spec.tiny_config and spec.tiny_train, f"{name}: spec.py needs tiny_config and tiny_train"
        assert spec.data is not None, name


@pytest.mark.parametrize("name", FAMILIES)
def test_config_round_trip(name):
    spec = registry.get_family(name)
    cls = spec.load_class()
    cfg = cls.config_for_data(spec.tiny_train.get("image_size", 8), 1, None, spec.tiny_config)
    model = cls.from_config(cfg)
    again = cls.from_config(model.config)
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_declared_capabilities_are_implemented(name):
    spec = registry.get_family(name)
    implemented = set(spec.load_class().capabilities())
    assert set(spec.capabilities) == implemented, f"{name}: spec says {spec.capabilities}, class has {implemented}"


@pytest.mark.parametrize("name", NAMES)
def test_undeclared_capabilities_are_refused_by_name(name):
    spec = registry.get_family(name)
    for cap in CAPABILITIES:
        if cap in spec.capabilities:
            assert registry.require_capability(name, cap) is spec
            continue
        with pytest.raises(CapabilityError) as e:
            registry.require_capability(name, cap)
        able = registry.families_with(cap)
        assert str(e.value).startswith(f"{name} cannot ")
        assert (", ".join(able) in str(e.value)) if able else "no family can" in str(e.value)


def test_train_step_is_finite_and_the_checkpoint_ships_only_the_export(trained):
    name, out, prepared = trained
    log = (out / runs.LOG_FILE).read_text().splitlines()
    assert len(log) == 2
    import json

    for line in log:
        rec = json.loads(line)
        losses = {k: v for k, v in rec.items() if k not in ("step", "lr", "it_s", "time")}
        assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), rec
    shipped = _weights(out / runs.MODEL_FILE)
    config, expected = prepared.model.export(prepared.trainer.inference_state_dict())
    assert shipped.keys() == expected.keys()
    from gencli.checkpoints import read_metadata

    assert read_metadata(out / runs.MODEL_FILE)["config"] == config


def test_save_then_load_gives_the_same_outputs(trained):
    name, out, prepared = trained
    spec = registry.get_family(name)
    loaded = gencli.load(name, str(out))
    _, expected = prepared.model.export(prepared.trainer.inference_state_dict())
    assert _same({k: v for k, v in loaded.state_dict().items()}, expected)
    if "sample" in spec.capabilities:
        a, b = loaded.generate(3, seed=5), loaded.generate(3, seed=5)
        assert torch.equal(a, b)
    if "translate" in spec.capabilities:
        size = spec.tiny_train.get("image_size", 8)
        x = torch.rand(2, loaded.channels, size, size) * 2 - 1
        assert torch.equal(gencli.translate(loaded, x), gencli.translate(loaded, x))


@pytest.mark.parametrize("name", FAMILIES)
def test_exact_resume_and_seed_determinism(name, tmp_path):
    straight = _train(name, tmp_path / "straight", 4)
    again = _train(name, tmp_path / "again", 4)
    _train(name, tmp_path / "resumed", 2)
    _train(name, tmp_path / "resumed", 4, resume=True)
    other = _train(name, tmp_path / "other", 4, seed=1)
    a = _weights(tmp_path / "straight" / runs.MODEL_FILE)
    assert _same(a, _weights(tmp_path / "again" / runs.MODEL_FILE)), "same seed, different weights"
    assert _same(a, _weights(tmp_path / "resumed" / runs.MODEL_FILE)), "2 steps + resume to 4 != 4 steps"
    assert not _same(a, _weights(tmp_path / "other" / runs.MODEL_FILE)), "the seed changes nothing"
    del straight, again, other


@pytest.mark.parametrize("name", [n for n in NAMES if "sample" in registry.FAMILIES[n].capabilities])
def test_generate_shape_range_and_seed(name, tmp_path):
    spec = registry.get_family(name)
    cls = spec.load_class()
    torch.manual_seed(0)
    model = cls.from_config(cls.config_for_data(8, 1, 3, spec.tiny_config)).eval()
    model.spec = spec
    x = model.generate(5, seed=1, batch_size=2)
    assert x.shape == (5, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.equal(x, model.generate(5, seed=1, batch_size=2))
    assert not torch.equal(x, model.generate(5, seed=2, batch_size=2))
    if model.per_image_noise:  # image i's noise depends on (seed, i) alone, whatever the batch size
        latents = type(model).sample  # compare the prior draws themselves (outputs differ by float rounding)
        try:
            type(model).sample = lambda self, n, generator, **_: self.prior(n, generator)
            z = model.generate(5, seed=1, batch_size=2)
            assert torch.equal(z, model.generate(5, seed=1, batch_size=5))
            assert torch.equal(z[3:], torch.cat([b for _, _, b in model.iter_generate(
                5, 1, batch_size=2, indices=range(3, 5))]))
            assert torch.equal(z[:1], model.prior(1, model.seed_generator(1)))  # interpolation's ends
            assert not torch.equal(z, model.generate(5, seed=2, batch_size=2))
        finally:
            type(model).sample = latents
    else:  # batch b is seeded with seed + b: the second batch of seed 1 is the first of seed 2
        # (the classes of a class-conditional model cycle 0, 1, 2, ...: the second batch has 2, 0)
        labels = [2, 0] if model.num_classes else None  # unconditional families ignore the data's labels
        assert torch.equal(x[2:4], model.generate(2, seed=2, batch_size=2, class_labels=labels))
    if "interpolate" in spec.capabilities:
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        frames = model.interpolate(3, gens)
        assert frames.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("name", NAMES)
def test_options_are_checked_by_the_schema(name):
    spec = registry.get_family(name)
    for command, options in spec.options.items():
        for opt in options:
            assert opt.flag.startswith("--") and opt.help, (name, command, opt.name)
        with pytest.raises(Exception) as e:
            spec.check_options(command, {"no_such_option": 1})
        assert "--no-such-option" in str(e.value)


def test_the_base_class_is_not_registered():
    for spec in registry.FAMILIES.values():
        assert spec.load_class() is not GenerativeModel
