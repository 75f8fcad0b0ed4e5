"""The `hf` engine: a transformers model behind the OpenAI-compatible endpoints fr-agent uses.

Runs inside the sandbox with only torch + transformers installed (stdlib HTTP server, one request
at a time under a lock), so it starts in seconds where vLLM takes minutes. It speaks the subset
of vLLM's API that the smoke stage and the eval agent call: token-id or text prompts, greedy or
sampled decoding, `logprobs`, `echo` + `prompt_logprobs`, `return_token_ids`, `min_tokens`,
`ignore_eos`, and a plain chat endpoint.

Usage: hf_server.py MODEL_PATH --host H --port P [--dtype D] [--device DEV] [--max-model-len N]
       [--served-model-name NAME] [--trust-remote-code] [--operators PLAN_JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Engine:
    def __init__(self, args: argparse.Namespace):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = args.device
        self.name = args.served_model_name or args.model
        self.max_len = args.max_model_len
        self.tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
        self.model = (
            AutoModelForCausalLM.from_pretrained(
                args.model, dtype=getattr(torch, args.dtype), trust_remote_code=args.trust_remote_code
            )
            .to(args.device)
            .eval()
        )
        self.lock = threading.Lock()
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if self.max_len and limit and self.max_len > limit:
            raise ValueError(
                f"max_model_len ({self.max_len}) is greater than the model's max_position_embeddings ({limit})"
            )
        self.max_len = self.max_len or limit or 2048

    def encode(self, prompt) -> list[int]:
        if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
            return list(prompt)
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string or a list of token ids")
        return self.tokenizer(prompt).input_ids

    def logprobs(self, ids: list[int]):
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([ids], device=self.device)).logits[0].float()
        return self.torch.log_softmax(logits, dim=-1)

    def entry(self, row, token: int, top: int) -> dict:
        """vLLM's logprob entry: the chosen token plus the top-k, each with its rank."""
        values, indices = row.topk(max(1, top))
        out = {}
        for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
            out[str(index)] = {"logprob": value, "rank": rank, "decoded_token": self.tokenizer.decode([index])}
        if str(token) not in out:
            out[str(token)] = {
                "logprob": row[token].item(),
                "rank": int((row > row[token]).sum().item()) + 1,
                "decoded_token": self.tokenizer.decode([token]),
            }
        return out

    def complete(self, body: dict) -> dict:
        ids = self.encode(body.get("prompt", ""))
        max_tokens = int(body.get("max_tokens") or 16)
        if len(ids) + max_tokens > self.max_len:
            raise ValueError(
                f"This model's maximum context length is {self.max_len} tokens. However, you requested "
                f"{len(ids) + max_tokens} tokens ({len(ids)} in the messages, {max_tokens} in the completion)."
            )
        temperature = float(body.get("temperature", 1.0) or 0.0)
        min_tokens = max_tokens if body.get("ignore_eos") else int(body.get("min_tokens") or 0)
        with self.lock:
            generated, chosen_logprobs, top = self.generate(
                ids, max_tokens, min_tokens, temperature, body.get("logprobs"), body.get("seed")
            )
            prompt_logprobs = None
            if body.get("prompt_logprobs") is not None:
                rows = self.logprobs(ids)
                k = int(body["prompt_logprobs"])
                prompt_logprobs = [None] + [self.entry(rows[i - 1], ids[i], k) for i in range(1, len(ids))]
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        choice = {
            "index": 0,
            "text": (self.tokenizer.decode(ids) if body.get("echo") else "") + text,
            "finish_reason": "length" if len(generated) >= max_tokens else "stop",
            "logprobs": None,
            "prompt_logprobs": prompt_logprobs,
        }
        if body.get("return_token_ids"):
            choice["token_ids"] = generated
            choice["prompt_token_ids"] = ids
        if body.get("logprobs") is not None:
            choice["logprobs"] = {
                "tokens": [self.tokenizer.decode([t]) for t in generated],
                "token_logprobs": chosen_logprobs,
                "top_logprobs": top,
            }
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(generated),
                "total_tokens": len(ids) + len(generated),
            },
        }

    def generate(self, ids: list[int], max_tokens: int, min_tokens: int, temperature: float, logprobs, seed):
        torch = self.torch
        generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        eos = self.tokenizer.eos_token_id
        tokens, chosen, top = list(ids), [], []
        past = None
        step_input = torch.tensor([ids], device=self.device)
        with torch.no_grad():
            for step in range(max_tokens):
                out = self.model(step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                row = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                if step < min_tokens and eos is not None:
                    row = row.clone()
                    row[eos] = -float("inf")
                if temperature > 0:
                    probs = torch.softmax(row / temperature, dim=-1).cpu()
                    token = int(torch.multinomial(probs, 1, generator=generator).item())
                else:
                    token = int(row.argmax().item())
                chosen.append(row[token].item())
                if logprobs is not None:
                    top.append(
                        {
                            self.tokenizer.decode([int(i)]): v
                            for v, i in zip(*row.topk(max(1, int(logprobs))))
                            for v, i in [(v.item(), i.item())]
                        }
                    )
                tokens.append(token)
                if token == eos and step + 1 >= min_tokens:
                    break
                step_input = torch.tensor([[token]], device=self.device)
        return tokens[len(ids) :], chosen, top

    def chat(self, body: dict) -> dict:
        messages = body.get("messages") or []
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "".join(f"{m.get('role')}: {m.get('content')}\n" for m in messages) + "assistant:"
        result = self.complete({**body, "prompt": prompt, "logprobs": None, "echo": False})
        choice = result["choices"][0]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": result["created"],
            "model": self.name,
            "usage": result["usage"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": choice["finish_reason"],
                    "message": {"role": "assistant", "content": choice["text"]},
                }
            ],
        }


def make_handler(engine: Engine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one access line per request, like vLLM's
            print(
                f'INFO: {self.address_string()} - "{self.requestline}" {args[1] if len(args) > 1 else ""}', flush=True
            )

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self.reply(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self.reply(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": engine.name,
                                "object": "model",
                                "max_model_len": engine.max_len,
                                "owned_by": "fr-agent",
                            }
                        ],
                    },
                )
            else:
                self.reply(404, {"error": {"message": f"no route {self.path}", "type": "NotFound"}})

        def do_POST(self):
            routes = {"/v1/completions": engine.complete, "/v1/chat/completions": engine.chat}
            if self.path not in routes:
                return self.reply(404, {"error": {"message": f"no route {self.path}", "type": "NotFound"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self.reply(200, routes[self.path](body))
            except (ValueError, TypeError, KeyError) as err:
                self.reply(400, {"error": {"message": str(err), "type": "BadRequestError", "code": 400}})
            except Exception as err:  # a crashed request is logged in full and reported, the server stays up
                traceback.print_exc()
                self.reply(500, {"error": {"message": f"{type(err).__name__}: {err}", "type": "InternalServerError"}})

    return Handler


def check_args(args: argparse.Namespace) -> int:
    report = {"ok": False, "engine": "hf", "dtype": args.dtype, "max_model_len": args.max_model_len}
    try:
        import torch
        from transformers import AutoConfig

        if not isinstance(getattr(torch, args.dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {args.dtype!r}")
        config = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
        limit = getattr(config, "max_position_embeddings", None)
        if args.max_model_len and limit and args.max_model_len > limit:
            raise ValueError(
                f"max_model_len ({args.max_model_len}) is greater than the model's max_position_embeddings ({limit})"
            )
        report["ok"] = True
    except Exception as err:
        traceback.print_exc()
        report["error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(report))
    return 0 if report["ok"] else 1


def apply_operators(plan: dict, model) -> dict:
    """FlagGems include/exclude and our Triton kernels, through the operator layer (loaded by path)."""
    import importlib.util
    from pathlib import Path

    kernels_dir = plan.get("kernels_dir") or str(Path(__file__).resolve().parents[2] / "kernels")
    spec = importlib.util.spec_from_file_location("_fr_operator_registry", str(Path(kernels_dir) / "registry.py"))
    registry = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = registry
    spec.loader.exec_module(registry)
    return registry.apply({**plan, "kernels_dir": kernels_dir}, model).summary()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument(
        "--operators",
        default=None,
        help="operator plan (JSON): FlagGems / Triton kernels applied to the loaded model through kernels/registry.py",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the args against the model config, print a "
        "JSON verdict and exit (what fix_serve_config verifies with)",
    )
    args = parser.parse_args()
    if args.check:
        return check_args(args)
    print(f"INFO: hf engine: loading {args.model} ({args.dtype} on {args.device})", flush=True)
    started = time.monotonic()
    engine = Engine(args)
    if args.operators:
        print(f"INFO: operators: {apply_operators(json.loads(args.operators), engine.model)}", flush=True)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(engine))
    print(
        f"INFO: model loaded in {time.monotonic() - started:.1f}s; serving on http://{args.host}:{args.port}",
        flush=True,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
