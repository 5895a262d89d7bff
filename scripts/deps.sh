# Sourced by scripts/test and scripts/demo: functions that make sure a dependency is there.

# BTCD_VERSION is the btcd release the regtest tests and the demo run. Its library
# packages (wire/v2, chaincfg/v2, ...) are pinned in go.mod; the node binary is pinned here.
BTCD_VERSION=v0.26.2

# need_btcd installs btcd at BTCD_VERSION from the Go module proxy unless it is on PATH.
need_btcd() {
	if command -v btcd >/dev/null 2>&1 && btcd --version 2>/dev/null | grep -q "${BTCD_VERSION#v}"; then
		return 0
	fi
	echo "installing btcd $BTCD_VERSION from the Go module proxy..." >&2
	GOFLAGS=-mod=mod go install "github.com/btcsuite/btcd@$BTCD_VERSION"
}
