"""Probe: would the engine accept this serve configuration? Parses it with vLLM's own server parser.

Usage: engine_args_check.py ENTRYPOINT -- SERVE_ARGS... (the args after `--model PATH`).
Checks the entrypoint can start (the `vllm` CLI reads its own distribution metadata) and that
vLLM's argument parser and serve-arg validation accept the args. Prints one JSON line.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import sys
import traceback


def parser_module():
    for name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        if importlib.util.find_spec(name) is not None:
            return importlib.import_module(name)
    raise ImportError("no vLLM serve argument parser found")


def main(entrypoint: str, serve_args: list[str]) -> int:
    report = {"ok": False, "entrypoint": entrypoint}
    try:
        if entrypoint == "cli":
            report["vllm_distribution"] = importlib.metadata.version("vllm")
        elif importlib.util.find_spec("vllm.entrypoints.openai.api_server") is None:
            raise ImportError("vllm.entrypoints.openai.api_server is missing")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        cli_args = parser_module()
        parser = cli_args.make_arg_parser(FlexibleArgumentParser())
        args = parser.parse_args(serve_args)
        cli_args.validate_parsed_serve_args(args)
        engine_args = AsyncEngineArgs.from_cli_args(args)
        report["engine_args"] = {
            k: str(v)
            for k, v in vars(engine_args).items()
            if k in ("model", "dtype", "max_model_len", "gpu_memory_utilization", "enforce_eager")
        }
        report["ok"] = True
    except SystemExit as err:  # argparse reports bad values by exiting
        report["error"] = f"argument parser rejected the args (exit {err.code})"
    except Exception as err:
        traceback.print_exc()
        report["error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sep = sys.argv.index("--")
    sys.exit(main(sys.argv[1], sys.argv[sep + 1 :]))
