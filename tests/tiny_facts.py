"""What analysis reads from a tiny Llama's config, for tests that need an analysis without a model."""

TINY_LLAMA_FACTS = {
    "architecture": "LlamaForCausalLM",
    "model_type": "llama",
    "dtype": "bfloat16",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
    "params_b": 0.002,
}
