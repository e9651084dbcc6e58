from __future__ import annotations

import pytest
import yaml
import torch

from ferlab.config import ENSEMBLES, GPU_PRESETS, PRESETS, ConfigError, TrainConfig, resolve_config
from ferlab.errors import FerlabError
from ferlab.labels import NUM_CLASSES
from ferlab.models import build_model


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_resolves(preset):
    config = resolve_config(preset)
    for key, value in PRESETS[preset].items():
        assert getattr(config, key) == value


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("epochs: 5\nlr: 0.01\nflip: false\n")
    config = resolve_config("cpu", yaml_file, {"lr": 0.02, "epochs": None})
    assert (config.epochs, config.lr, config.flip, config.model) == (5, 0.02, False, "fastnet")
    toml_file = tmp_path / "run.toml"
    toml_file.write_text('model = "cnn"\nbatch_size = 64\n')
    assert resolve_config(None, toml_file).batch_size == 64


def test_model_options_add_to_the_presets_for_its_model_and_leave_with_it(tmp_path):
    preset = PRESETS["best"]["model_options"]
    assert resolve_config("best", overrides={"model_options": {"dropout": 0.1}}).model_options == {**preset, "dropout": 0.1}
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("model_options: {activation: elu, dropout: 0.2}\n")
    merged = resolve_config("best", yaml_file, {"model_options": {"dropout": 0.1}}).model_options
    assert merged == {**preset, "activation": "elu", "dropout": 0.1}  # flags over the file over the preset
    assert resolve_config("best", overrides={"model": "vgg8"}).model_options == {}
    assert resolve_config("best", overrides={"model": "vgg8", "model_options": {"dropout": 0.1}}).model_options == {"dropout": 0.1}


def test_unknown_keys_and_bad_values_are_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochz: 5\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'epochz'"):
        resolve_config(None, path)
    path.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match="epochs must be int"):
        resolve_config(None, path)
    with pytest.raises(ConfigError, match="optimizer must be one of adam, adamw, sgd, muon"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config("turbo")
    with pytest.raises(ConfigError, match="mix must be one of none, mixup, cutmix"):
        TrainConfig(mix="blend")
    with pytest.raises(ConfigError, match=r"mix_probability must be a probability in \[0, 1\], got 1.5"):
        TrainConfig(mix_probability=1.5)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(None, path)


@pytest.mark.parametrize("reader", ["config", "sweep", "experiment"])
def test_a_settings_file_that_does_not_parse_is_named_in_one_line_with_the_line_of_its_problem(tmp_path, reader):
    from ferlab.experiments import load_experiment
    from ferlab.sweep import read_sweep

    path = tmp_path / "broken.yaml"
    path.write_text("epochs: 5\nlr: 0.1\n  optimizer: sgd\n")  # line 3 is indented under a scalar
    read = {"config": lambda: resolve_config(None, path), "sweep": lambda: read_sweep(path),
            "experiment": lambda: load_experiment(str(path))}[reader]
    with pytest.raises(ConfigError) as raised:
        read()
    assert str(raised.value) == f"{path}:3: not valid YAML (mapping values are not allowed here)"
    path.write_bytes(b"epochs: 5\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not UTF-8 text \(byte 0xff at offset 10\)"):
        read()
    path.write_text("- [1]\n")  # YAML, but a list
    with pytest.raises(FerlabError, match=r"broken.yaml: expected a mapping"):
        read()
    path.write_text(f"epochs: {'9' * 5000}\n")  # int() refuses it: a ValueError, not a YAMLError, was a traceback
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(a number of more digits than Python reads"):
        read()
    path.write_text("epochs: 5\nlr: 0.1\nseed: 1\nlr: 0.5\n")  # PyYAML kept 0.5 without a word
    with pytest.raises(ConfigError) as raised:
        read()
    assert str(raised.value) == f"{path}:4: not valid YAML (key 'lr' given twice, first on line 2)"
    path.write_text("a: {x: 1, y: 2}\nb: {x: 3, x: 4}\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:2: not valid YAML \(key 'x' given twice, first on line 2\)"):
        read()
    path.unlink()
    path.mkdir()  # a folder where the file should be
    with pytest.raises(FerlabError, match=r"broken.yaml: not a regular file"):
        read()


def test_yaml_keys_a_merge_brings_in_may_be_overridden():
    from ferlab.config import load_yaml

    assert load_yaml("base: &b {lr: 0.1, epochs: 2}\nrun:\n  <<: *b\n  lr: 0.3\n") == {
        "base": {"lr": 0.1, "epochs": 2}, "run": {"lr": 0.3, "epochs": 2}}
    assert load_yaml("{1: a, 1.5: b, '1': c}") == {1: "a", 1.5: "b", "1": "c"}
    with pytest.raises(yaml.YAMLError, match="key True given twice"):  # YAML's 1 and true: one key in Python
        load_yaml("{1: a, true: c}")


def test_a_toml_number_too_long_to_read_and_epochs_past_any_schedule_are_one_line(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text(f"epochs = {'9' * 5000}\n")
    with pytest.raises(ConfigError, match=r"long.toml: not valid TOML: a number of more digits than Python reads"):
        resolve_config(None, path)
    with pytest.raises(ConfigError, match=r"^epochs must be at most 10,000 .*got 99999999999$"):
        resolve_config(None, overrides={"epochs": 99_999_999_999})  # trained on for ever at a learning rate near 0


def test_a_presets_model_options_do_not_follow_another_model():
    assert resolve_config("smoke").model_options
    assert resolve_config("smoke", overrides={"model": "cnn"}).model_options == {}


def test_the_config_choices_match_the_registries():
    from ferlab.config import CHOICES
    from ferlab.data.augment import MIXERS
    from ferlab.data.normalize import NORMALIZERS
    from ferlab.schedules import SCHEDULES
    from ferlab.training import OPTIMIZERS

    assert CHOICES["mix"] == ("none", *MIXERS)
    assert CHOICES["optimizer"] == tuple(OPTIMIZERS) and CHOICES["normalization"] == tuple(NORMALIZERS)
    assert CHOICES["schedule"] == tuple(SCHEDULES)


def test_a_config_that_is_not_a_text_file_is_one_line(tmp_path):
    import os

    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"epochs: 3\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"c.yaml: not UTF-8 text \(byte 0xff at offset 10\)"):
        resolve_config(file=binary)
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    with pytest.raises(ConfigError, match=r"pipe.yaml: not a regular file"):
        resolve_config(file=pipe)


@pytest.mark.parametrize("name", sorted(ENSEMBLES))
def test_an_ensemble_preset_names_gpu_presets_of_different_families_that_take_their_views(name):
    members = [resolve_config(preset) for preset in ENSEMBLES[name]]
    assert len(members) >= 2 and all(preset in GPU_PRESETS for preset in ENSEMBLES[name])
    assert len({config.model for config in members}) == len(members)  # families differ, not seeds
    for config in members:
        model = build_model(config.model, **config.model_options).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, 1, config.crop, config.crop)).shape == (2, NUM_CLASSES)
