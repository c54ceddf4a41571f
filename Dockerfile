# One image for every EstateDesk service, the gateway (console + API at one address) and
# the operator's commands: `docker run IMAGE run intake`, `… migrate`, `… gateway`.
# Docker cannot run on the machine this repository is developed on: this file is checked
# by tests/unit/test_deploy_manifests.py (structure, non-root, real commands), not built
# there. Build: docker build -t estatedesk:1.0 .

# --- stage 1: the staff console (Vue 3 + Element Plus), built by Vite -------------------
FROM node:22-bookworm-slim AS console
WORKDIR /src/console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY console/ ./
RUN npm run build

# --- stage 2: the Python dependencies in a virtual environment ---------------------------
FROM python:3.11-slim-bookworm AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/estatedesk
COPY pyproject.toml README.md /src/
COPY estatedesk /src/estatedesk
COPY shared /src/shared
COPY services /src/services
# A regular (not editable) install: the code and every service's Alembic migrations.
RUN /opt/estatedesk/bin/pip install /src

# --- stage 3: the runtime, as an unprivileged user ---------------------------------------
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 estatedesk \
 && useradd --system --uid 10001 --gid estatedesk --home-dir /srv/estatedesk --create-home estatedesk
COPY --from=python /opt/estatedesk /opt/estatedesk
COPY --from=python /src /srv/estatedesk/app
COPY --from=console /src/console/dist /srv/estatedesk/app/console/dist
WORKDIR /srv/estatedesk/app
ENV PATH=/opt/estatedesk/bin:$PATH \
    PYTHONPATH=/srv/estatedesk/app \
    PYTHONUNBUFFERED=1 \
    ESTATEDESK_HTTP_HOST=0.0.0.0 \
    ESTATEDESK_DATA_DIR=/srv/estatedesk/data
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8005
ENTRYPOINT ["estatedesk"]
CMD ["--help"]
