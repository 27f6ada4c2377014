# One image for web, workers and Flower; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    LOUPE_VAR_DIR=/var/lib/loupe \
    LOUPE_MODELS_DIR=/models

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 loupe

WORKDIR /app
COPY requirements.txt ./
COPY requirements ./requirements
RUN pip install -r requirements.txt

COPY . .
RUN DJANGO_SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
        python manage.py collectstatic --noinput \
    && mkdir -p /var/lib/loupe/media /models \
    && chown -R loupe:loupe /var/lib/loupe /models

USER loupe
EXPOSE 8000
# gunicorn with the workers and threads of config/processes.py (LOUPE_WEB_WORKERS), as `make run` starts it.
CMD ["python", "-m", "config.processes", "web", "--bind", "0.0.0.0:8000"]
