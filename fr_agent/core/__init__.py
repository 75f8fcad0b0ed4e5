"""The core: base types every other layer uses. It imports nothing else from fr_agent."""
