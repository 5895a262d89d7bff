package oci

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tarOf(t *testing.T, hs ...*tar.Header) *tar.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		body := []byte(h.Linkname)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len("content"))
			body = []byte("content")
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()
	return tar.NewReader(&buf)
}

var lim = unpackLimits{bytes: 1 << 20, files: 100}

// TestUnpackRefusesEscapes: no entry may write outside the root, by "..", by an
// absolute name, or through a symlink an earlier entry planted.
func TestUnpackRefusesEscapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		hs   []*tar.Header
	}{
		{"dotdot", []*tar.Header{{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"inner dotdot", []*tar.Header{{Name: "a/../../escaped", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"symlink dir", []*tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: ".."}, {Name: "link/escaped", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"absolute symlink dir", []*tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/.."}, {Name: "link/escaped", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"hard link out", []*tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			os.WriteFile(filepath.Join(parent, "outside"), []byte("x"), 0o644)
			dir := filepath.Join(parent, "rootfs")
			os.Mkdir(dir, 0o755)
			_, err := unpack(tarOf(t, tc.hs...), dir, lim)
			if err == nil {
				t.Fatal("unpacked")
			}
			if _, serr := os.Stat(filepath.Join(parent, "escaped")); serr == nil {
				t.Fatal("a file was written outside the root")
			}
			t.Log(err)
		})
	}
	// An absolute name is the same name relative to the root.
	dir := t.TempDir()
	if _, err := unpack(tarOf(t, &tar.Header{Name: "/etc/x", Typeflag: tar.TypeReg, Mode: 0o644}), dir, lim); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "x")); err != nil || string(b) != "content" {
		t.Fatalf("/etc/x: %q %v", b, err)
	}
}

// TestUnpackDropsDevicesAndSetuid: device nodes and FIFOs are skipped, set-user-ID
// and set-group-ID bits dropped, limits enforced, mount points made.
func TestUnpackDropsDevicesAndSetuid(t *testing.T) {
	dir := t.TempDir()
	u, err := unpack(tarOf(t,
		&tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4755},
		&tar.Header{Name: "bin/sg", Typeflag: tar.TypeReg, Mode: 0o2755},
		&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8},
		&tar.Header{Name: "dev/mem", Typeflag: tar.TypeChar, Mode: 0o660, Devmajor: 1, Devminor: 1},
		&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o644},
		&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/su"},
		&tar.Header{Name: "bin/hard", Typeflag: tar.TypeLink, Linkname: "bin/su"},
	), dir, lim)
	if err != nil {
		t.Fatal(err)
	}
	if u.skipped != 3 || u.bytes != 2*int64(len("content")) {
		t.Fatalf("%+v: want 3 skipped, 14 bytes", u)
	}
	for _, f := range []string{"bin/su", "bin/sg"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: mode %v", f, fi.Mode())
		}
	}
	for _, f := range []string{"dev/sda", "dev/mem", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Fatalf("%s was created", f)
		}
	}
	for _, d := range []string{"proc", "dev", "tmp"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Fatalf("mount point /%s: %v", d, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "/bin/su" {
		t.Fatalf("symlink: %q %v", target, err)
	}

	_, err = unpack(tarOf(t, &tar.Header{Name: "a", Typeflag: tar.TypeReg}, &tar.Header{Name: "b", Typeflag: tar.TypeReg}), t.TempDir(),
		unpackLimits{bytes: 10, files: 100})
	if err == nil || !strings.Contains(err.Error(), "over 10 bytes") {
		t.Fatalf("size limit: %v", err)
	}
	_, err = unpack(tarOf(t, &tar.Header{Name: "a", Typeflag: tar.TypeReg}, &tar.Header{Name: "b", Typeflag: tar.TypeReg}), t.TempDir(),
		unpackLimits{bytes: 100, files: 1})
	if err == nil || !strings.Contains(err.Error(), "more than 1 files") {
		t.Fatalf("file limit: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, ok := range []string{"127.0.0.1:5000/job@" + d, "registry.example.com/team/job@" + d, "localhost/job@" + d} {
		r, err := ParseRef(ok)
		if err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
		if r.Digest() != d {
			t.Fatalf("%s: digest %s", ok, r.Digest())
		}
	}
	for _, bad := range []string{"", "127.0.0.1:5000/job:latest", "127.0.0.1:5000/job", "job@" + d, "library/job@" + d,
		"127.0.0.1:5000/job:v1@" + d, "127.0.0.1:5000/job@sha256:0123", "127.0.0.1:5000/job@sha512:" + strings.Repeat("0", 128),
		"127.0.0.1:5000/Job@" + d, "127.0.0.1:5000/" + strings.Repeat("a", 600) + "@" + d} {
		if _, err := ParseRef(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
