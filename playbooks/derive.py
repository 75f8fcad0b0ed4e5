"""Parameters computed from what a log says, for playbook entries with a `derive:` key."""

from __future__ import annotations

import math

# Import name -> distribution name, where they differ.
MODULE_TO_DISTRIBUTION = {
    "yaml": "PyYAML", "cv2": "opencv-python-headless", "PIL": "pillow", "sklearn": "scikit-learn",
    "google.protobuf": "protobuf", "google": "protobuf", "attr": "attrs", "dateutil": "python-dateutil",
    "bs4": "beautifulsoup4", "Crypto": "pycryptodome", "jwt": "PyJWT", "dotenv": "python-dotenv",
    "zmq": "pyzmq", "msgpack": "msgpack", "sentencepiece": "sentencepiece", "flag_gems": "flag-gems",
    "cpuinfo": "py-cpuinfo", "git": "GitPython", "magic": "python-magic", "serial": "pyserial",
}


def distribution_of_module(params: dict) -> dict:
    module = params["module"]
    for candidate in (module, module.split(".")[0]):
        if candidate in MODULE_TO_DISTRIBUTION:
            return {"package": MODULE_TO_DISTRIBUTION[candidate]}
    return {"package": module.split(".")[0].replace("_", "-")}


def memory_fraction(params: dict) -> dict:
    """At most half the memory (vLLM's own advice), never more than 90% of what is free, in 0.05 steps:
    the reference model, the agent and other jobs share the machine."""
    free = float(params["available"]) / float(params["total"])
    return {"fraction": max(0.05, math.floor(min(0.5, free * 0.9) * 20) / 20)}


def tp_divisor(params: dict) -> dict:
    heads, tp = int(params["heads"]), int(params["tp"])
    return {"tensor_parallel_size": max(d for d in range(1, tp + 1) if heads % d == 0)}


DERIVE = {fn.__name__: fn for fn in (distribution_of_module, memory_fraction, tp_divisor)}
