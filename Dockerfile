# bridge: the server with embedded defaults. PyAV's wheel bundles FFmpeg, so the image needs
# no system codecs.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir . && useradd --system bridge
USER bridge
EXPOSE 1935 8080
ENTRYPOINT ["bridge"]
CMD ["serve"]
