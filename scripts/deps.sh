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
