# momentum: multi-stage build, runs as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin momentum

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/momentum --create-home momentum
COPY --from=build /src/target/release/momentum /usr/local/bin/momentum
COPY config/docker.yaml /etc/momentum/momentum.yaml
USER momentum
WORKDIR /var/lib/momentum
EXPOSE 4317 4318 9464
ENTRYPOINT ["/usr/local/bin/momentum"]
CMD ["run", "--config", "/etc/momentum/momentum.yaml"]
