"""Probe: is the chip visible to torch, and does a matmul in the recipe's dtype run on it?

Usage: device_check.py TORCH_DEVICE DTYPE [VISIBLE_DEVICES_ENV]. Prints one JSON line.
"""

import json
import os
import sys
import traceback


def main(device: str, dtype_name: str, visible_env: str | None) -> int:
    import torch

    report = {
        "ok": False,
        "device": device,
        "dtype": dtype_name,
        "torch": torch.__version__,
        "visible_devices": os.environ.get(visible_env) if visible_env else None,
    }
    try:
        backend = getattr(torch, device, None) if device != "cpu" else None
        if device != "cpu":
            if backend is None or not backend.is_available():
                raise RuntimeError(f"torch.{device} is not available in this torch build ({torch.__version__})")
            report["device_count"] = backend.device_count()
            report["name"] = backend.get_device_name(0) if hasattr(backend, "get_device_name") else None
        else:
            report["device_count"] = 1
            report["name"] = "cpu"
        dtype = getattr(torch, dtype_name)
        a = torch.randn(64, 64, device=device).to(dtype)
        result = (a @ a.T).float()
        report["finite"] = bool(torch.isfinite(result).all())
        report["ok"] = report["finite"]
    except Exception as err:
        traceback.print_exc()
        report["error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
