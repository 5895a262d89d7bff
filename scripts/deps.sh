# Sourced by scripts/test and scripts/demo: functions that make sure a dependency is there.

# need_btcd installs btcd at the version go.mod pins unless that version is on PATH.
need_btcd() {
	local want
	want=$(go list -m -f '{{.Version}}' github.com/btcsuite/btcd)
	if command -v btcd >/dev/null 2>&1 && btcd --version 2>/dev/null | grep -q "${want#v}"; then
		return 0
	fi
	echo "installing btcd $want from the Go module proxy..." >&2
	GOFLAGS=-mod=mod go install "github.com/btcsuite/btcd@$want"
}
