# The ascend family: like vendor.Dockerfile, plus the CANN environment. vllm-ascend's image sets it up
# in shell profiles (set_env.sh scripts), which `docker run` does not read; the sandbox sources
# /opt/fr-agent/env.sh before every command, so the same variables reach each stage.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY ca-bundle.crt /etc/ssl/certs/fr-agent-ca.crt
COPY uv /usr/local/bin/uv
RUN mkdir -p /opt/fr-agent && printf '%s\n' \
      'for f in /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/nnal/atb/set_env.sh; do' \
      '  [ -f "$f" ] && . "$f"' \
      'done' > /opt/fr-agent/env.sh \
    && uv venv --quiet /opt/venv --python "$(command -v python3)" --system-site-packages
ENV SSL_CERT_FILE=/etc/ssl/certs/fr-agent-ca.crt PIP_CERT=/etc/ssl/certs/fr-agent-ca.crt VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}
