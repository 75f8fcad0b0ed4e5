from fr_agent.core.secrets import REDACTED, is_secret_name, redact_env, redact_text, redact_value

HF = "hf_abcdefghijklmnopqrstuvwxyz123456"
SK = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX_yz-0123"


def test_secret_names_by_word():
    for name in [
        "HF_TOKEN",
        "hf_token",
        "OPENAI_API_KEY",
        "apiKey",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "--api-key",
        "HF_AUTHTOKEN",
    ]:
        assert is_secret_name(name), name


def test_ordinary_names_are_not_secret():
    for name in [
        "TOKENIZERS_PARALLELISM",
        "max_num_batched_tokens",
        "OMP_NUM_THREADS",
        "tokenizer",
        "MONKEY",
        "VLLM_CPU_KVCACHE_SPACE",
    ]:
        assert not is_secret_name(name), name


def test_redact_env_by_name_and_by_value():
    env = {
        "HF_TOKEN": "anything",
        "MY_VAR": HF,
        "OTHER": f"Bearer {SK}",
        "OMP_NUM_THREADS": "8",
        "TOKENIZERS_PARALLELISM": "false",
    }
    assert redact_env(env) == {
        "HF_TOKEN": REDACTED,
        "MY_VAR": REDACTED,
        "OTHER": REDACTED,
        "OMP_NUM_THREADS": "8",
        "TOKENIZERS_PARALLELISM": "false",
    }


def test_short_lookalikes_are_kept():
    env = {"A": "hf_short", "B": "sk-short", "C": "disk-abcdefghijklmnopqrstuvwxyz"}
    assert redact_env(env) == env


def test_redact_text_replaces_token_substrings():
    text = f"login with {HF} then call openai with {SK}."
    assert redact_text(text) == f"login with {REDACTED} then call openai with {REDACTED}."


def test_redact_text_assignments_and_flags():
    text = "HF_TOKEN=abc123 OMP_NUM_THREADS=8 vllm serve m --api-key s3cret --max-num-batched-tokens 512"
    assert redact_text(text) == (
        f"HF_TOKEN={REDACTED} OMP_NUM_THREADS=8 vllm serve m --api-key {REDACTED} --max-num-batched-tokens 512"
    )


def test_redact_text_is_idempotent():
    once = redact_text(f"HF_TOKEN={HF} x {SK}")
    assert redact_text(once) == once and HF not in once and SK not in once


def test_redact_value_nested_and_argv():
    value = {
        "env": {"HF_TOKEN": "x", "A": "1"},
        "argv": ["vllm", "--api-key", "s3cret", "--port", "8000"],
        "num_key_value_heads": 8,
        "note": f"token {HF}",
    }
    assert redact_value("event", value) == {
        "env": {"HF_TOKEN": REDACTED, "A": "1"},
        "argv": ["vllm", "--api-key", REDACTED, "--port", "8000"],
        "num_key_value_heads": 8,
        "note": f"token {REDACTED}",
    }


def test_bare_key_is_a_mapping_key_not_a_secret():
    assert not is_secret_name("key")
    assert redact_value("args", {"key": "max_model_len", "value": 2048}) == {"key": "max_model_len", "value": 2048}


def test_name_value_pair_naming_a_secret():
    args = {"name": "DB_PASSWORD", "value": "hunter2"}
    assert redact_value("args", args) == {"name": "DB_PASSWORD", "value": REDACTED}
    assert redact_value("args", {"name": "OMP_NUM_THREADS", "value": "8"})["value"] == "8"


def test_redact_text_keeps_markdown_code_spans():
    assert redact_text("- `HF_TOKEN=abc`") == f"- `HF_TOKEN={REDACTED}`"
