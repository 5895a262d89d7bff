# hashgrid in a container built FROM scratch: the static binary, CA certificates (for
# webhooks, price feeds and TLS nodes) and nothing else. Build:
#
#   docker build --build-arg VERSION=v1.0.0 -t hashgrid .
#   docker run --rm -p 3333:3333 -p 127.0.0.1:8080:8080 -v hashgrid-data:/data hashgrid \
#     pool --config /data/pool.toml --data /data --api :8080
#
# Inside a container the API must listen on every interface (--api :8080) for a port
# mapping to reach it; publish it on the host's loopback as above, or behind a proxy.
# Secrets: --node-password-file and --admin-token-file pointing at mounted files, or
# $HASHGRID_NODE_PASSWORD and $HASHGRID_ADMIN_TOKEN.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/hashgrid/hashgrid/cli.version=${VERSION}" \
      -o /out/hashgrid ./cmd/hashgrid \
 && mkdir -p /out/data /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/hashgrid /hashgrid
# A writable data directory and /tmp (the demo's temporary directory) for the
# unprivileged user the container runs as.
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/tmp /tmp
USER 65532:65532
ENV HASHGRID_LOG_FORMAT=json
VOLUME /data
EXPOSE 3333 3334 8080 8081
ENTRYPOINT ["/hashgrid"]
CMD ["version"]
