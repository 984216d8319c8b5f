FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY schemas ./schemas
COPY topology.yaml ./
RUN pip install --no-cache-dir .
ENV STREAM_APP_TOPOLOGY=/app/topology.yaml \
    STREAM_APP_DATA_DIR=/data \
    STREAM_APP_WEB_HOST=0.0.0.0
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["stream-app"]
CMD ["worker"]
