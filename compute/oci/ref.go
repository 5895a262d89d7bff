package oci

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// MaxRefLen bounds an image reference.
const MaxRefLen = 512

// pinned matches a reference's digest: only sha256, in lower-case hex.
var pinned = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// Ref is an image reference pinned by digest: host/repository@sha256:HEX.
type Ref struct {
	d name.Digest
}

// ParseRef parses ref and refuses anything not pinned by a sha256 digest (a tag, or a
// tag with a digest, names bytes that may change; every provider and every spot-check
// re-run must run the same bytes) and any reference without an explicit registry
// host (which would silently mean Docker Hub).
func ParseRef(ref string) (Ref, error) {
	if len(ref) == 0 || len(ref) > MaxRefLen {
		return Ref{}, fmt.Errorf("oci: image reference must be 1..%d bytes", MaxRefLen)
	}
	if !pinned.MatchString(ref) {
		return Ref{}, fmt.Errorf("oci: image reference %q is not pinned: give host/repository@sha256:<64 hex digits>", ref)
	}
	repo := strings.TrimSuffix(ref, ref[strings.LastIndexByte(ref, '@'):])
	if strings.Contains(repo[strings.LastIndexByte(repo, '/')+1:], ":") {
		return Ref{}, fmt.Errorf("oci: image reference %q has both a tag and a digest: give the digest only", ref)
	}
	host, _, ok := strings.Cut(repo, "/")
	if !ok || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return Ref{}, fmt.Errorf("oci: image reference %q names no registry host", ref)
	}
	d, err := name.NewDigest(ref, name.StrictValidation)
	if err != nil {
		return Ref{}, fmt.Errorf("oci: image reference: %w", err)
	}
	return Ref{d: d}, nil
}

// String is the reference as given.
func (r Ref) String() string { return r.d.String() }

// Host is the registry's host (and port).
func (r Ref) Host() string { return r.d.RegistryStr() }

// Digest is the pinned digest, "sha256:HEX".
func (r Ref) Digest() string { return r.d.DigestStr() }
