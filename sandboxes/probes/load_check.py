"""Probe: load the model with transformers in the recipe's dtype on the device and run one forward pass.

Usage: load_check.py MODEL_PATH DTYPE DEVICE [--trust-remote-code]. Prints one JSON line.
"""

import json
import sys
import traceback


def main(path: str, dtype_name: str, device: str, trust_remote_code: bool) -> int:
    report = {"ok": False, "model": path, "dtype": dtype_name}
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        report["architectures"] = getattr(config, "architectures", None)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype_name), trust_remote_code=trust_remote_code
        ).to(device)
        report["parameters"] = sum(p.numel() for p in model.parameters())
        ids = tokenizer("Hardware compilers lower models", return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            logits = model(ids).logits.float()
        report["finite"] = bool(torch.isfinite(logits).all())
        report["ok"] = report["finite"]
        if not report["finite"]:
            print("load_check: logits contain NaN or Inf", file=sys.stderr)
    except Exception as err:
        traceback.print_exc()
        report["error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(args[0], args[1], args[2], "--trust-remote-code" in sys.argv))
