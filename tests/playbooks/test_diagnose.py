"""Diagnosis on real logs captured from runs of the stack (tests/data/logs), plus the edge cases:
huge logs, stray bytes, nothing recognisable, broken playbook files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fr_agent.errors import CatalogError
from fr_agent.playbooks.diagnose import diagnose_log, diagnose_text, load_playbooks

LOGS = Path(__file__).parents[1] / "data" / "logs"

# log file -> (playbook, the tool call it must propose first)
CASES = {
    "import-torchvision-nms.log": ("torch-extension-op-missing",
                                   ("install_dependency", {"package": "torchvision", "action": "remove"})),
    "import-torchaudio-abi.log": ("torch-extension-library-load",
                                  ("install_dependency", {"package": "torchaudio", "action": "remove"})),
    "import-torchcodec-abi.log": ("torch-extension-library-load",
                                  ("install_dependency", {"package": "torchcodec", "action": "remove"})),
    "device-bf16-sigill.log": ("illegal-instruction",
                               ("set_env_var", {"name": "ONEDNN_MAX_CPU_ISA", "value": "AVX512_CORE_BF16"})),
    "serve-vllm-cli-metadata.log": ("vllm-cli-distribution-metadata",
                                    ("fix_serve_config", {"key": "entrypoint", "value": "api_server"})),
    "serve-cpu-memory-utilization.log": ("vllm-cpu-memory-utilization",
                                         ("fix_serve_config", {"key": "gpu_memory_utilization", "value": 0.5})),
    "vllm-zmq-ipc-path-too-long.log": ("ipc-path-too-long", ("set_env_var", {"name": "TMPDIR", "value": "/tmp"})),
    "vllm-cpu-worker-died-compiling.log": ("vllm-worker-died-compiling",
                                           ("fix_serve_config", {"key": "enforce_eager", "value": True})),
    "operators-triton-no-driver.log": ("triton-no-driver",
                                       ("patch_operator", {"op": "rms_norm", "strategy": "reference"})),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_logs(name):
    playbook, (tool, args) = CASES[name]
    diagnosis = diagnose_log(LOGS / name, "stage")
    assert diagnosis.playbook == playbook
    assert (diagnosis.tool_calls[0].tool, diagnosis.tool_calls[0].args) == (tool, args)
    assert diagnosis.evidence and all(len(line) < 2000 for line in diagnosis.evidence)


def test_vllm_prefixes_and_ansi_are_stripped():
    log = ("\x1b[1;36m(EngineCore_DP0 pid=4242)\x1b[0m ERROR 11-23 11:08:37 [core.py:1510] ValueError: To serve at least one "
           "request with the models's max seq len (32768), (4.00 GiB KV cache is needed, which is larger than the available "
           "KV cache memory (1.25 GiB). Based on the available memory, the estimated maximum model length is 10240. Try "
           "increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.\n")
    diagnosis = diagnose_text(log, "serve")
    assert diagnosis.playbook == "vllm-kv-cache-max-model-len"
    assert diagnosis.tool_calls[0].args == {"key": "max_model_len", "value": 10240}
    assert diagnosis.evidence[0].startswith("ValueError: To serve")


def test_the_error_that_ended_the_run_wins_over_earlier_warnings():
    log = "UserWarning: Failed to initialize NumPy: No module named 'numpy'\n...\nRuntimeError: Total number of attention " \
          "heads (32) must be divisible by tensor parallel size (3).\n"
    diagnosis = diagnose_text(log, "serve")
    assert diagnosis.playbook == "vllm-tp-heads" and diagnosis.tool_calls[0].args == {"key": "tensor_parallel_size", "value": 2}


def test_missing_module_maps_to_its_distribution():
    diagnosis = diagnose_text("ModuleNotFoundError: No module named 'yaml'\n", "import")
    assert diagnosis.tool_calls[0].args == {"package": "PyYAML"}


def test_unrecognised_log_is_unknown_with_evidence():
    text = "starting\nloading shards\nSomeVendorError: device 3 returned status 0x7f (firmware 12.4)\n"
    diagnosis = diagnose_text(text, "load")
    assert diagnosis.category == "unknown" and diagnosis.tool_calls == [] and diagnosis.confidence == 0.0
    assert diagnosis.evidence == ["SomeVendorError: device 3 returned status 0x7f (firmware 12.4)"]
    # the signature ignores volatile numbers, so the same failure on another device is the same failure
    assert diagnose_text(text.replace("device 3", "device 5"), "load").signature == diagnosis.signature


def test_unrepairable_and_timeouts():
    assert diagnose_text("RuntimeError: CUDA driver version is insufficient for CUDA runtime version", "device").category == "unrepairable"
    hung = diagnose_text("loading...\n[fr-agent] command timed out after 5s and was killed\n", "load", timed_out=True)
    assert hung.category == "unrepairable" and "hung" in hung.explanation


def test_huge_log_with_stray_bytes_is_read_bounded(tmp_path):
    path = tmp_path / "huge.log"
    with path.open("wb") as handle:
        filler = b"INFO 11-23 11:08:37 [worker.py:1] step ok \xff\xfe garbage\n" * 20_000
        for _ in range(60):  # ~60 MB
            handle.write(filler)
        handle.write(b"ModuleNotFoundError: No module named 'cv2'\n")
    diagnosis = diagnose_log(path, "import")
    assert diagnosis.tool_calls[0].args == {"package": "opencv-python-headless"}


def test_broken_playbook_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "signatures.yaml"
    bad.write_text("- id: x\n  explain: y\n  match: '(unclosed'\n  category: unknown\n")
    with pytest.raises(CatalogError) as err:
        load_playbooks(str(bad))
    assert "broken playbook file" in str(err.value) and "\n" not in str(err.value)
