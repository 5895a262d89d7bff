// Package ocitest helps tests run OCI jobs for real: it says when this machine cannot
// (not root, no runc), starts an in-memory registry on loopback
// (go-containerregistry's pkg/registry), builds Go programs static, and pushes them as
// images. It is for tests only.
package ocitest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hashgrid/hashgrid/compute/oci"
)

// NeedRuntime skips t, saying how to get what is missing, unless this process is
// root and runc is installed. CI runs as root with runc installed by scripts/deps.sh,
// so these tests run there.
func NeedRuntime(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("OCI jobs need root (runc makes the containers' cgroups and namespaces): run the tests as root, after `. scripts/deps.sh; need_runc`")
	}
	if _, err := oci.NewRuntime(oci.RuntimeConfig{Dir: t.TempDir()}); err != nil {
		t.Skipf("no OCI runtime here (%v): run `. scripts/deps.sh; need_runc` (installs runc) and the tests as root", err)
	}
}

// Registry starts an in-memory registry on loopback and returns its host:port.
func Registry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// BuildGo builds the Go package pkg (a path in this module) as a static Linux
// executable for this machine and returns its path.
func BuildGo(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// File is one entry of a layer.
type File struct {
	Name     string
	Body     []byte
	Mode     int64
	Type     byte   // tar.TypeReg when zero
	Linkname string // for links
}

// Layer is a layer of files, as a tar archive.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: typ, Linkname: f.Linkname, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Push pushes an image of layers, with cfg as its configuration, to host/repo and
// returns its reference pinned by digest.
func Push(t testing.TB, host, repo string, cfg v1.Config, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host + "/" + repo + "@" + d.String()
}

// PushProgram pushes an image holding the executable at path as /bin/job, its
// entrypoint, and returns the pinned reference.
func PushProgram(t testing.TB, host, repo, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Push(t, host, repo, v1.Config{Entrypoint: []string{"/bin/job"}, Env: []string{"JOB=1"}},
		Layer(t, File{Name: "bin/", Type: tar.TypeDir, Mode: 0o755}, File{Name: "bin/job", Body: b, Mode: 0o755}))
}
