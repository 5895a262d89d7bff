# Sourced by scripts/test and scripts/demo: functions that make sure a dependency is there.

# BTCD_VERSION is the btcd release the regtest tests and the demo run. Its library
# packages (wire/v2, chaincfg/v2, ...) are pinned in go.mod; the node binary is pinned here.
BTCD_VERSION=v0.26.2

# need_btcd installs btcd at BTCD_VERSION from the Go module proxy unless it is on PATH.
need_btcd() {
	if command -v btcd >/dev/null 2>&1 && btcd --version 2>/dev/null | grep -q "${BTCD_VERSION#v}"; then
		return 0
	fi
	echo "installing btcd $BTCD_VERSION from the Go module proxy (a few minutes the first time)..." >&2
	GOFLAGS=-mod=mod go install "github.com/btcsuite/btcd@$BTCD_VERSION"
}

# need_chromium installs Debian's chromium package (the dashboard's browser tests run
# it headless) unless a chromium is already there. It needs apt and root.
need_chromium() {
	if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "need_chromium: chromium is not installed and apt-get is not available; install Chromium so that /usr/bin/chromium exists" >&2
		return 1
	fi
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "need_chromium: installing chromium needs root (or sudo)" >&2
			return 1
		fi
		sudo="sudo"
	fi
	echo "installing chromium from Debian's packages..." >&2
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# need_runc installs Debian's runc package (compute/oci runs OCI image jobs with it, and
# its tests and compute/provider's run real containers) unless a runc is already there.
# It needs apt and root; the container tests need root anyway.
need_runc() {
	if command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ]; then
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "need_runc: runc is not installed and apt-get is not available; install runc" >&2
		return 1
	fi
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "need_runc: installing runc needs root (or sudo)" >&2
			return 1
		fi
		sudo="sudo"
	fi
	echo "installing runc from Debian's packages..." >&2
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq runc >/dev/null
}

# POSTGRES_TEST_PORT is where need_postgres starts a private PostgreSQL cluster.
POSTGRES_TEST_PORT=54329

# need_postgres makes a PostgreSQL server available to the tests of postgres/ and
# exports HASHGRID_TEST_POSTGRES, a URL for it, unless that is set already. A server
# answering on 127.0.0.1:5432 (Debian's, with trust authentication for user postgres)
# is used as it is; HASHGRID_POSTGRES_PRIVATE=1 skips it. Otherwise Debian's
# postgresql package is installed if its binaries are missing, and a private cluster
# (trust authentication, loopback only) is created in a temporary directory and started
# on POSTGRES_TEST_PORT (fsync off: it is thrown away); an EXIT trap stops it and removes the directory, so the caller
# must not exec away. As root, the cluster runs as user postgres.
need_postgres() {
	if [ -n "${HASHGRID_TEST_POSTGRES:-}" ]; then
		return 0
	fi
	if [ -z "${HASHGRID_POSTGRES_PRIVATE:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
		export HASHGRID_TEST_POSTGRES="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		return 0
	fi
	local bin
	bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
		if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
			echo "need_postgres: no PostgreSQL and cannot install one (needs apt-get as root); set HASHGRID_TEST_POSTGRES=postgres://USER@HOST:PORT/DB" >&2
			return 1
		fi
		echo "installing postgresql from Debian's packages..." >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
		bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	fi
	local as=()
	if [ "$(id -u)" -eq 0 ]; then
		as=(runuser -u postgres --)
	fi
	HASHGRID_POSTGRES_DIR=$(mktemp -d -t hashgrid-postgres.XXXXXX)
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$HASHGRID_POSTGRES_DIR"
	fi
	echo "starting a private PostgreSQL cluster on 127.0.0.1:$POSTGRES_TEST_PORT in $HASHGRID_POSTGRES_DIR" >&2
	if ! "${as[@]}" "$bin/initdb" -D "$HASHGRID_POSTGRES_DIR/data" -U postgres -A trust --no-sync >"$HASHGRID_POSTGRES_DIR/initdb.log" 2>&1 ||
		! "${as[@]}" "$bin/pg_ctl" -D "$HASHGRID_POSTGRES_DIR/data" -l "$HASHGRID_POSTGRES_DIR/server.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $POSTGRES_TEST_PORT -k $HASHGRID_POSTGRES_DIR -c fsync=off" start >/dev/null; then
		echo "need_postgres: could not start PostgreSQL:" >&2
		cat "$HASHGRID_POSTGRES_DIR"/*.log >&2 || true
		rm -rf "$HASHGRID_POSTGRES_DIR"
		return 1
	fi
	HASHGRID_POSTGRES_BIN=$bin
	HASHGRID_POSTGRES_AS=("${as[@]}")
	trap stop_postgres EXIT
	export HASHGRID_TEST_POSTGRES="postgres://postgres@127.0.0.1:$POSTGRES_TEST_PORT/postgres?sslmode=disable"
}

# stop_postgres stops the cluster need_postgres started, if any, and removes it.
stop_postgres() {
	if [ -n "${HASHGRID_POSTGRES_DIR:-}" ]; then
		"${HASHGRID_POSTGRES_AS[@]}" "$HASHGRID_POSTGRES_BIN/pg_ctl" -D "$HASHGRID_POSTGRES_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$HASHGRID_POSTGRES_DIR"
		HASHGRID_POSTGRES_DIR=
	fi
}

# need_nats makes a nats-server binary available to the cluster tests and exports
# HASHGRID_TEST_NATS_SERVER, its path, unless that is set already. The tests start their
# own servers on loopback ports and stop them. Order: a nats-server on PATH (Debian's
# package puts it in /usr/sbin); Debian's nats-server package when apt-get runs as root;
# otherwise the server module at the version go.mod pins, from the Go module proxy.
need_nats() {
	if [ -n "${HASHGRID_TEST_NATS_SERVER:-}" ]; then
		return 0
	fi
	local bin
	bin=$(PATH="$PATH:/usr/sbin" command -v nats-server 2>/dev/null || true)
	if [ -z "$bin" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		echo "installing nats-server from Debian's packages..." >&2
		if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; then
			bin=$(PATH="$PATH:/usr/sbin" command -v nats-server 2>/dev/null || true)
		fi
	fi
	if [ -z "$bin" ]; then
		local v
		v=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
		echo "installing nats-server $v from the Go module proxy..." >&2
		GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$v" || return 1
		bin="$(go env GOPATH)/bin/nats-server"
	fi
	export HASHGRID_TEST_NATS_SERVER=$bin
}
