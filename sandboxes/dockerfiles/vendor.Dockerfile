# Vendor chip families (nvidia, iluvatar, cambricon, metax, kunlunxin, mthreads, hygon, tsingmicro).
# BASE_IMAGE is the vendor's runtime image from the chip profile: it ships the vendor's torch build
# (and often its vLLM build) in its own Python. The venv sees those through system site packages, so
# the recipe's pins add to the vendor stack instead of replacing it. The compiler and headers are the
# image's own (the in-container precheck reports them missing rather than guessing a package manager).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY ca-bundle.crt /etc/ssl/certs/fr-agent-ca.crt
COPY uv /usr/local/bin/uv
RUN uv venv --quiet /opt/venv --python "$(command -v python3)" --system-site-packages
ENV SSL_CERT_FILE=/etc/ssl/certs/fr-agent-ca.crt PIP_CERT=/etc/ssl/certs/fr-agent-ca.crt VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}
