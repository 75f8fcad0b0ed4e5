"""Diagnosis on real logs captured from runs of the stack (tests/data/logs), plus the edge cases:
huge logs, stray bytes, nothing recognisable, broken playbook files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fr_agent.core.errors import CatalogError
from fr_agent.playbooks.diagnose import diagnose_log, diagnose_text, load_playbooks

LOGS = Path(__file__).parents[1] / "data" / "logs"

# log file -> its playbook and the tool call it must propose first
EXPECTED = yaml.safe_load((LOGS / "expected.yaml").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_logs(name):
    diagnosis = diagnose_log(LOGS / name, "stage")
    assert diagnosis.playbook == EXPECTED[name]["playbook"]
    assert diagnosis.tool_calls[0].model_dump() == EXPECTED[name]["call"]
    assert diagnosis.evidence and all(len(line) < 2000 for line in diagnosis.evidence)


def test_vllm_prefixes_and_ansi_are_stripped():
    log = (
        "\x1b[1;36m(EngineCore_DP0 pid=4242)\x1b[0m ERROR 11-23 11:08:37 [core.py:1510] ValueError: "
        "To serve at least one request with the models's max seq len (32768), "
        "(4.00 GiB KV cache is needed, which is larger than the available KV cache memory (1.25 GiB). "
        "Based on the available memory, the estimated maximum model length is 10240. "
        "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.\n"
    )
    diagnosis = diagnose_text(log, "serve")
    assert diagnosis.playbook == "vllm-kv-cache-max-model-len"
    assert diagnosis.tool_calls[0].args == {"key": "max_model_len", "value": 10240}
    assert diagnosis.evidence[0].startswith("ValueError: To serve")


def test_the_error_that_ended_the_run_wins_over_earlier_warnings():
    log = (
        "UserWarning: Failed to initialize NumPy: No module named 'numpy'\n...\n"
        "RuntimeError: Total number of attention heads (32) must be divisible by tensor parallel size (3).\n"
    )
    diagnosis = diagnose_text(log, "serve")
    assert diagnosis.playbook == "vllm-tp-heads" and diagnosis.tool_calls[0].args == {
        "key": "tensor_parallel_size",
        "value": 2,
    }


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
    assert (
        diagnose_text("RuntimeError: CUDA driver version is insufficient for CUDA runtime version", "device").category
        == "unrepairable"
    )
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


# ---------------------------------------------------------------- normalization


from fr_agent.playbooks.diagnose import needles, normalize, normalize_levels  # noqa: E402


def test_prefixes_of_workers_ranks_and_timestamps_are_stripped():
    raw = (
        "2024-06-28T06:11:52.685300953Z (LLMRayActor pid=20770) ERROR 06-28 06:11:45 worker_base.py:145] Boom\n"
        "(VllmWorker rank=1 pid=194255) ERROR 05-08 14:46:12 [multiproc_executor.py:435] torch.OutOfMemoryError: x\n"
        '(EngineCore_DP0 pid=16862)   File "/x/parallel_state.py", line 1185, in ensure\n'
        "(RayWorkerWrapper pid=123, ip=10.0.0.1) INFO 01-01 00:00:00 [a.py:1] hello\n"
        '[rank0]:   File "/y.py", line 1, in main\n'
        "[2025-01-29 08:52:43 TP5] Scheduler hit an exception\n"
        "vllm-1  | ERROR 11-18 18:07:28 engine.py:366] ValueError: No available memory\n"
        "W0816 16:43:33.649654 127 pinned_memory_manager.cc:236] Unable to allocate pinned memory\n"
    )
    assert normalize(raw) == [
        "Boom",
        "torch.OutOfMemoryError: x",
        'File "/x/parallel_state.py", line 1185, in ensure',
        "hello",
        'File "/y.py", line 1, in main',
        "Scheduler hit an exception",
        "ValueError: No available memory",
        "Unable to allocate pinned memory",
    ]


def test_ansi_progress_bars_and_cuda_async_hints_go():
    raw = (
        "\x1b[31mRuntimeError: CUDA error: uncorrectable ECC error encountered\x1b[0m\n"
        "CUDA kernel errors might be asynchronously reported at some other API call, "
        "so the stacktrace below might be incorrect.\n"
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1.\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
        "Loading shards:  10%|#\rLoading shards: 100%|##########|\n"
    )
    assert normalize(raw) == [
        "RuntimeError: CUDA error: uncorrectable ECC error encountered",
        "Loading shards: 100%|##########|",
    ]
    inline = (
        "CUDA error: out of memory CUDA kernel errors might be asynchronously reported at some other API call, so x"
    )
    assert normalize(inline) == ["CUDA error: out of memory"]
    # the hint names an env var but is no fix: it must not become a set_env_var diagnosis
    assert diagnose_text(raw).playbook == "ecc-error"


def test_lines_pasted_into_one_paragraph_are_split_back():
    raw = (
        "(VllmWorkerProcess pid=4575) ERROR 08-23 16:49:54 multiproc_worker_utils.py:226] Exception in worker: "
        "No module named 'einops', Traceback (most recent call last): (VllmWorkerProcess pid=4575) ERROR 08-23 "
        '16:49:54 multiproc_worker_utils.py:226] File "/w.py", line 223, in _run_worker_process'
    )
    assert normalize(raw) == [
        "Exception in worker: No module named 'einops', Traceback (most recent call last):",
        'File "/w.py", line 223, in _run_worker_process',
    ]


def test_the_same_line_from_several_ranks_is_kept_once_and_warnings_are_flagged():
    raw = "\n".join(f"(VllmWorker rank={r} pid={10 + r}) WARNING 01-01 00:00:00 [a.py:1] slow path" for r in range(4))
    raw += "\nValueError: real error\n/usr/lib/python3/x.py:12: UserWarning: something\n"
    lines, warnings = normalize_levels(raw)
    assert lines == ["slow path", "ValueError: real error", "/usr/lib/python3/x.py:12: UserWarning: something"]
    assert warnings == [True, False, True]


def test_a_root_cause_wins_over_the_generic_symptom_after_it():
    log = (
        "ERROR 10-16 05:20:48 registry.py:264] ImportError: /usr/local/lib/python3.10/dist-packages/"
        "flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: _ZN3c105Error\n"
        'Traceback (most recent call last):\n  File "/usr/local/bin/vllm", line 8, in <module>\n'
        "ValueError: Model architectures ['LlavaForConditionalGeneration'] are not supported for now.\n"
    )
    diagnosis = diagnose_text(log)
    assert diagnosis.playbook == "extension-undefined-symbol" and diagnosis.params["package"] == "flash-attn"
    alone = diagnose_text("ValueError: Model architectures ['FooForCausalLM'] are not supported for now.\n")
    assert alone.playbook == "model-arch-not-supported" and alone.confidence < 0.9


def test_chained_exceptions_keep_the_root_cause():
    log = (
        "huggingface_hub.utils._errors.GatedRepoError: 401 Client Error.\n"
        "Cannot access gated repo for url https://huggingface.co/api/models/meta-llama/x.\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "/a/restful_api.py", line 771, in launch_model\n'
        "RuntimeError: failed to launch model\n"
    )
    diagnosis = diagnose_text(log)
    assert (diagnosis.category, diagnosis.params) == ("unrepairable", {"reason": "credentials"})


def test_flaggems_culprit_only_when_it_is_a_registered_op():
    frame = (
        'Traceback (most recent call last):\n  File "/x/flag_gems/ops/{op}.py", line 9, in {op}\n'
        "RuntimeError: Triton Error [CUDA]: illegal\n"
    )
    registered = diagnose_text(frame.format(op="softmax"))
    assert registered.category == "patch_operator" and registered.params == {"op": "softmax", "strategy": "disable"}
    assert diagnose_text(frame.format(op="my_helper_util")).category == "unknown"


# A log -> the arguments of the fix its diagnosis proposes, read from the log's own numbers and names.
FIX_ARGUMENTS = {
    "kv cache: the older message": (
        "ValueError: The model's max seq len (4096) is larger than the maximum number of tokens that can be stored "
        "in KV cache (3664). Try increasing `gpu_memory_utilization` or decreasing `max_model_len`",
        {"key": "max_model_len", "value": 3664},
    ),
    "kv cache: no estimate, the length that fits": (
        "ValueError: To serve at least one request with the models's max seq len (32768), (4.00 GiB KV cache is "
        "needed, which is larger than the available KV cache memory (1.00 GiB).",
        {"key": "max_model_len", "value": 8192},
    ),
    "tp heads: a power-of-two divisor": (
        "ValueError: Total number of attention heads (28) must be divisible by tensor parallel size (8).",
        {"key": "tensor_parallel_size", "value": 4},
    ),
    # A resolver conflict moves the pin to the side the dependent needs.
    "resolver conflict: uv": (
        "Because vllm==0.5.4 depends on numpy<2.0.0 and you require vllm==0.5.4, we can conclude that you "
        "require numpy<2.0.0.\nAnd because you require numpy==2.1.1, we can conclude that your requirements "
        "are unsatisfiable.",
        {"package": "numpy", "action": "downgrade"},
    ),
    "resolver conflict: pip": (
        "The conflict is caused by:\n    The user requested tokenizers==0.19.1\n"
        "    transformers 5.19.0 depends on tokenizers<0.24.0,>=0.23.1",
        {"package": "tokenizers", "action": "upgrade"},
    ),
    "unrecognized serve arguments: the first flag only": (
        "usage: vllm serve ...\nvllm: error: unrecognized arguments: --swap-space 4 --disable-log-requests",
        {"key": "swap_space", "value": None},
    ),
    "cache folder: the variable of the failing library's frame": (
        'Traceback (most recent call last):\n  File "/usr/lib/python3/site-packages/triton/runtime/cache.py", '
        'line 66, in __init__\n    os.makedirs(self.cache_dir, exist_ok=True)\n  File "/usr/lib/python3.10/os.py", '
        "line 225, in makedirs\n    mkdir(name, mode)\nOSError: [Errno 30] Read-only file system: '/app/.cache/x'",
        {"name": "TRITON_CACHE_DIR", "value": "/tmp/triton-cache"},
    ),
}
# Each looks like a known failure and is not that failure.
NEAR_MISSES = {
    "a pin nobody depends on": "error: you require foo==1.0 and it does not exist",
    "a stray positional argument is not an engine argument": (
        "api_server.py: error: unrecognized arguments: /root/models/Qwen3-8B"
    ),
    "a missing input file read by a library is not a cache folder": (
        'Traceback (most recent call last):\n  File "/x/site-packages/huggingface_hub/file_download.py", line 9, '
        "in hf_hub_download\n    open(path)\nFileNotFoundError: [Errno 2] No such file or directory: '/m/config.json'"
    ),
}


@pytest.mark.parametrize("log, arguments", FIX_ARGUMENTS.values(), ids=FIX_ARGUMENTS)
def test_fix_arguments_come_from_the_log(log, arguments):
    assert diagnose_text(log).params == arguments


@pytest.mark.parametrize("log", NEAR_MISSES.values(), ids=NEAR_MISSES)
def test_near_misses_are_unknown(log):
    assert diagnose_text(log).category == "unknown"


def test_every_playbook_regex_has_literal_needles():
    """Needles narrow a big log to the lines that can match: a regex without them would scan it all."""
    for book in load_playbooks():
        assert needles(book.match) is not None, book.id
        for extra in (*book.requires, *book.unless):
            assert needles(extra) is not None, (book.id, extra)


def test_diagnosis_json_has_category_and_tool_argument_params_at_top_level():
    diagnosis = diagnose_text("ModuleNotFoundError: No module named 'PIL'\n")
    data = json.loads(diagnosis.model_dump_json())
    assert data["category"] == "install_dependency" and data["params"] == {"package": "pillow"}
    assert data["tool_calls"][0] == {"tool": "install_dependency", "args": {"package": "pillow"}}
    assert set(data) >= {"category", "params", "evidence", "tool_calls", "confidence"}


def test_cli_diagnose_reads_stdin_with_stray_bytes(tmp_path):
    from tests.cli_helpers import fr_agent

    data = (
        b"\xff\xfe garbage\n(EngineCore_DP0 pid=1) ERROR 01-01 00:00:00 [core.py:1] ValueError: Bfloat16 is only "
        b"supported on GPUs with compute capability of at least 8.0. Your Tesla T4 GPU has compute capability 7.5.\n"
    )
    result = fr_agent("diagnose", "-", "--json", home=tmp_path, input=data.decode("latin-1"), timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # exactly one JSON object
    assert data["category"] == "fix_serve_config" and data["params"] == {"key": "dtype", "value": "float16"}


def test_torch_logs_typo_becomes_the_valid_name_or_errors_only():
    log = (
        "ValueError: Invalid log settings: {}, must be a comma separated list of fully\nqualified module names\n"
        "Valid settings:\nall, dynamo, graph_breaks, recompiles, recompiles_verbose\n"
    )
    assert diagnose_text(log.format("recompile")).params == {"name": "TORCH_LOGS", "value": "recompiles"}
    assert diagnose_text(log.format("+dynamo,bogus_thing")).params["value"] == "+dynamo"
    assert diagnose_text(log.format("zzz")).params["value"] == "-all"
