"""Kernel tests run Triton in interpreter mode: the test machine has no GPU,
and Triton only runs on CPU tensors with TRITON_INTERPRET=1, which must be
set before a @triton.jit function is defined (i.e. before a kernel file is
imported). Setting it here, at conftest import time, guarantees that.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"
