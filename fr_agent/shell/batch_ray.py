"""The Ray executor: each host advertises its chips as Ray custom resources (`{"chip:cpu": 2}`), and each
launch is a Ray task that asks for one unit of its chip's resource, so it runs on a host that has that
chip. The task runs the same `fr-agent run|resume` process a local batch runs, on its node.

Start a host with `ray start --resources "$(fr-agent ray-resources)" ...`. Run directories are written
where the launch runs: give every host the same FR_AGENT_HOME on a shared filesystem for `--resume` and
`transcripts` to see them from the driver (results and summaries come back through Ray either way).
"""

from __future__ import annotations

import glob
import os
import socket

import ray

from fr_agent.agents.precheck import check_device
from fr_agent.core.catalog import Catalog, ChipProfile
from fr_agent.shell.batch import LaunchSpec, ProcessResult, collect, run_to_end

RESOURCE_PREFIX = "chip:"


def resource_name(chip: str) -> str:
    return RESOURCE_PREFIX + chip


def chip_count(chip: ChipProfile, cpu_slots: int) -> int:
    """How many of this chip the host has: per-card device nodes, or `cpu_slots` for the cpu profile."""
    if chip.torch_device == "cpu":
        return cpu_slots
    if not check_device(chip).ok:
        return 0
    cards = {
        n
        for pattern in chip.detection.device_nodes
        if any(c.isdigit() or c == "[" for c in pattern)
        for n in glob.glob(pattern)
    }
    return max(1, len(cards))


def host_resources(catalog: Catalog, cpu_slots: int | None = None) -> dict[str, float]:
    """The chips this host can run jobs for, as Ray custom resources."""
    slots = cpu_slots if cpu_slots is not None else max(1, (os.cpu_count() or 2) // 2)
    counts = {resource_name(name): chip_count(chip, slots) for name, chip in catalog.chips.items()}
    return {name: float(count) for name, count in counts.items() if count > 0}


@ray.remote(num_cpus=0, max_retries=0)
def run_launch(spec_json: str) -> str:
    spec = LaunchSpec.model_validate_json(spec_json)
    node = ray.get_runtime_context().get_node_id()[:8]
    return run_to_end(spec, host=f"{socket.gethostname()}/{node}").model_dump_json()


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None, catalog: Catalog, cpu_slots: int | None = None):
        if address in (None, "", "local"):  # a one-host cluster started here, advertising this host's chips
            ray.init(
                address="local",
                resources=host_resources(catalog, cpu_slots),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.refs: dict[ray.ObjectRef, tuple[str, LaunchSpec]] = {}

    def unavailable(self, chip: str) -> str | None:
        resources = ray.cluster_resources()
        if resource_name(chip) in resources:
            return None
        chips = sorted(k.removeprefix(RESOURCE_PREFIX) for k in resources if k.startswith(RESOURCE_PREFIX))
        return f"no Ray node advertises {resource_name(chip)} (the cluster has: {', '.join(chips) or 'no chips'})"

    def submit(self, spec: LaunchSpec) -> None:
        ref = run_launch.options(resources={resource_name(spec.chip): 1}).remote(spec.model_dump_json())
        self.refs[ref] = (spec.job_id, spec)

    def wait(self, timeout: float) -> list[tuple[str, ProcessResult]]:
        if not self.refs:
            return []
        ready, rest = ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        if ready and rest:  # others that ended meanwhile, without waiting again
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        done = []
        for ref in ready:
            job_id, spec = self.refs.pop(ref)
            try:
                result = ProcessResult.model_validate_json(ray.get(ref))
            except ray.exceptions.RayError as err:  # the node or its worker died: the launch crashed
                result = ProcessResult(
                    exit_code=None,
                    seconds=0.0,
                    host="?",
                    stderr_tail=f"ray: {type(err).__name__}: {str(err).splitlines()[0]}",
                )
            done.append((job_id, result))
        return done

    def interrupt(self) -> list[tuple[str, ProcessResult]]:
        for ref in self.refs:
            ray.cancel(ref, force=True)  # the worker dies; its fr-agent process dies with it (PDEATHSIG)
        stopped = [(job_id, collect(spec, None, 0.0, False, "?")) for job_id, spec in self.refs.values()]
        self.refs.clear()
        return stopped

    def close(self) -> None:
        ray.shutdown()
