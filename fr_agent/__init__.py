"""fr-agent: move LLMs onto new AI chips."""

__version__ = "0.1.0"
