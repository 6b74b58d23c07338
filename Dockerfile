# bridge: the server with embedded defaults. PyAV's wheel bundles FFmpeg, so the image needs
# no system codecs.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir . && useradd --system bridge
USER bridge
# WebRTC media: a fixed UDP range the host can publish (-p 50000-50049:50000-50049/udp); set
# WEBRTC_PUBLIC_IPS to the host's address, since the container's own is not reachable.
ENV WEBRTC_UDP_PORTS=50000-50049
EXPOSE 1935 8080 50000-50049/udp
ENTRYPOINT ["bridge"]
CMD ["serve"]
