package compute

import (
	"bytes"
	"regexp"
	"slices"
	"strings"

	"github.com/hashgrid/hashgrid"
)

// Runtimes a provider may offer: what kinds of job it can run.
const (
	RuntimeWasm = "wasm" // WebAssembly modules in the sandbox (package compute/sandbox); every provider has it
	RuntimeOCI  = "oci"  // OCI images under runc (package compute/oci)
)

// MaxImageRefBytes bounds an order's image reference.
const MaxImageRefBytes = 512

// MinImageMemoryPerCore is the least memory an image order may ask for per core: a
// provider runs up to one unit per core, each a container whose runtime needs some
// memory of its own before the job starts (compute/oci.MinMemory).
const MinImageMemoryPerCore = 16 << 20

// imageRef is what the market accepts as an image reference: a registry host (with a
// dot or a port, or localhost), a lower-case repository path, and a sha256 digest, and
// nothing else (no tag). The provider parses it again, fully, before it fetches.
var imageRef = regexp.MustCompile(`^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z0-9-]+|[A-Za-z0-9.-]+:[0-9]{1,5})(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}$`)

// validJob checks what an order runs: exactly one of a WebAssembly module and an OCI
// image reference pinned by digest, so that every provider, and every spot check's
// re-run, runs the same bytes.
func validJob(r OrderRequest) error {
	bad := func(f string, a ...any) error { return hashgrid.Errorf(hashgrid.EINVALID, f, a...) }
	switch {
	case len(r.Module) > 0 && r.Image != "":
		return bad("give a module or an image, not both")
	case r.Image != "":
		if len(r.Image) > MaxImageRefBytes {
			return bad("image reference over %d bytes", MaxImageRefBytes)
		}
		if !imageRef.MatchString(r.Image) {
			return bad("image %q: give registry-host/repository@sha256:<64 hex digits> (pinned by digest; tags are refused)", r.Image)
		}
		if r.Cores > 0 && r.Memory < uint64(r.Cores)*MinImageMemoryPerCore {
			return bad("an image order needs at least %d MiB of memory per core", MinImageMemoryPerCore>>20)
		}
	case len(r.Module) == 0 || len(r.Module) > MaxModuleBytes:
		return bad("module must be 1..%d bytes (or give an image)", MaxModuleBytes)
	case !bytes.HasPrefix(r.Module, []byte("\x00asm")):
		return bad("module is not WebAssembly")
	}
	return nil
}

// runtime is the runtime an order's job needs.
func (r OrderRequest) runtime() string {
	if r.Image != "" {
		return RuntimeOCI
	}
	return RuntimeWasm
}

// offersRuntime reports whether a provider offering res runs jobs of runtime rt. An
// offer that lists no runtimes is an agent from before they were listed: WebAssembly
// only.
func offersRuntime(res Resources, rt string) bool {
	if len(res.Runtimes) == 0 {
		return rt == RuntimeWasm
	}
	return slices.Contains(res.Runtimes, rt)
}

// validRuntimes checks an offer's runtimes: known names, each once.
func validRuntimes(rts []string) error {
	for i, rt := range rts {
		if rt != RuntimeWasm && rt != RuntimeOCI {
			return hashgrid.Errorf(hashgrid.EINVALID, "runtime %q: known runtimes are %s", rt, strings.Join([]string{RuntimeWasm, RuntimeOCI}, ", "))
		}
		if slices.Contains(rts[:i], rt) {
			return hashgrid.Errorf(hashgrid.EINVALID, "runtime %q listed twice", rt)
		}
	}
	return nil
}
