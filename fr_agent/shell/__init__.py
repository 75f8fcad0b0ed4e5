"""The shell: the CLI, runs, batch, review, replay and benchmarks. Nothing imports it."""
