"""Bad input gets a one-line error and a non-zero exit, and nothing already done is lost."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import fr_agent, one_line_error


def test_unknown_chip(fr_home):
    result = fr_agent("run", "tiny-llama", "--chip", "quantum9000", "--yes", home=fr_home)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "unknown chip 'quantum9000'" in line and "iluvatar" in line


def test_unknown_model(fr_home):
    result = fr_agent("run", "NoSuchModel-7B", "--chip", "cpu", "--yes", home=fr_home)
    assert result.returncode == 2
    assert "unknown model 'NoSuchModel-7B'" in one_line_error(result)


def test_unknown_hub_model_offline(fr_home):
    result = fr_agent("run", "nobody/not-a-model", "--chip", "cpu", "--yes", home=fr_home)
    assert result.returncode == 2
    assert "not found in the HF cache or on the hub" in one_line_error(result)


def test_missing_local_model_dir(fr_home, tmp_path):
    result = fr_agent("run", str(tmp_path / "missing-model"), "--chip", "cpu", "--yes", home=fr_home)
    assert result.returncode == 2
    assert "does not exist" in one_line_error(result)


def test_broken_catalog_yaml(fr_home, tmp_path):
    (tmp_path / "chips.yaml").write_text("cpu:\n  vendor: generic\n  dtypes: [float32\n")
    result = fr_agent("chips", "--catalog", str(tmp_path), home=fr_home)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "broken catalog YAML" in line and "chips.yaml" in line and "line" in line


def test_broken_settings(fr_home, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("limits: {max_attempts: zero}\n")
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", "--yes", "--config", str(settings), home=fr_home)
    assert result.returncode == 2
    assert "limits.max_attempts" in one_line_error(result)


def test_deepseek_on_iluvatar_fails_precheck_with_what_it_needs(fr_home):
    result = fr_agent("run", "DeepSeek-R1", "--chip", "iluvatar", "--yes", home=fr_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "precheck_failed" in result.stdout
    assert "no iluvatar device visible" in result.stdout and "ixsmi" in result.stdout
    shown = fr_agent("transcripts", "show", "latest", "--json", home=fr_home)
    import json

    summary = json.loads(shown.stdout)
    assert summary["status"] == "precheck_failed" and summary["model"] == "DeepSeek-R1"
    assert summary["stages"] == []  # nothing was attempted without the device


def test_resume_unknown_run(fr_home):
    result = fr_agent("resume", "no-such-run", "--yes", home=fr_home)
    assert result.returncode == 2
    assert "no run 'no-such-run'" in one_line_error(result)


def test_unknown_engine(fr_home):
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", "--engine", "tgi", "--yes", home=fr_home)
    assert result.returncode == 2
    assert "unknown engine 'tgi'" in one_line_error(result)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a":', "not JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"model_type": 3, "hidden_size": 64}', "model_type: Input should be a valid string"),
        ('{"num_attention_heads": "many"}', "num_attention_heads"),
        ('{"hidden_size": -4}', "hidden_size"),
    ],
)
def test_a_broken_model_config_is_one_line_and_the_run_stays_closed(tmp_path, text, expected):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(text)
    result = fr_agent("run", str(model), "--chip", "cpu", "--yes", home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = one_line_error(result)
    assert "config.json" in line and expected in line
    resumed = fr_agent("resume", "latest", "--yes", home=tmp_path / "home")  # finished with its error, not resumable
    assert resumed.returncode == 2 and "already finished" in one_line_error(resumed)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"- a\n- b\n", "expected a mapping of sections"),
        (b"42\n", "expected a mapping of sections"),
        (bytes(range(128, 256)), "cannot read settings"),
        (b"sandbox: {output_cap_bytes: -5}\n", "sandbox.output_cap_bytes"),
        (b"timeouts: {serve: -1}\n", "timeouts.serve"),
    ],
)
def test_a_broken_settings_file_is_one_line(tmp_path, content, expected):
    settings = tmp_path / "settings.yaml"
    settings.write_bytes(content)
    result = fr_agent("run", "tiny-llama", "--chip", "cpu", "--yes", "--config", str(settings), home=tmp_path / "h")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in one_line_error(result)
    assert not (tmp_path / "h" / "runs").exists()  # refused before a run folder exists


def test_a_catalog_entry_that_is_not_a_mapping(tmp_path):
    (tmp_path / "chips.yaml").write_text("cpu: [1, 2]\n")
    result = fr_agent("chips", "--catalog", str(tmp_path), home=tmp_path)
    assert result.returncode == 2 and "invalid entry 'cpu'" in one_line_error(result)


def test_card_metadata_of_the_wrong_shape_is_a_finding_not_a_crash(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\ntags: [cpu]\nfr_agent: just-a-string\n---\n# card\n")
    result = fr_agent("card", "lint", str(card), "--json", home=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    messages = [f["message"] for f in json.loads(result.stdout)]
    assert "metadata fr_agent is a str, not a mapping" in messages
