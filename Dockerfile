# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
# collectstatic needs settings that import; these values are for the build step only.
RUN DEBUG=false SECRET_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput
RUN useradd --create-home outreach && mkdir -p /app/var/media && chown -R outreach /app/var
USER outreach
EXPOSE 8000
CMD ["gunicorn", "outreach_site.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "30"]
