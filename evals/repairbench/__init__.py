"""The repair benchmark: recipes and models broken the way real deployments break, run through the
whole loop in the local sandbox with the cheap `hf` engine, and judged by each scenario's own verify
command. `fr-agent bench repair` or `python -m fr_agent.evals.repairbench`."""
