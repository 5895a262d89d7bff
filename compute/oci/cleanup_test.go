package oci

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestRuntimeCleansUpLeftovers: a container left running by a provider that died
// (started here detached, as runc leaves it when it is killed with the provider) is
// deleted when a runtime starts again on the same directory.
func TestRuntimeCleansUpLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("OCI jobs need root: run the tests as root, after `. scripts/deps.sh; need_runc`")
	}
	dir := t.TempDir()
	rt, err := NewRuntime(RuntimeConfig{Dir: dir})
	if err != nil {
		t.Skipf("no OCI runtime here (%v): run `. scripts/deps.sh; need_runc` and the tests as root", err)
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the blocking program is written for amd64 only")
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	// pause() in a loop: the container runs until it is killed.
	prog, err := elfProgram([]byte{0xb8, 34, 0, 0, 0 /* mov eax, 34 (pause) */, 0x0f, 0x05 /* syscall */, 0xeb, 0xf7 /* jmp back */})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "block"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	im := &Image{Rootfs: rootfs, Config: ImageConfig{Entrypoint: []string{"/block"}}}
	id := "hg-leftover-" + strconv.Itoa(os.Getpid())
	cg, cgPath, err := newUnitCgroup(id, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := runConfig(im, Spec{Cores: 1, Memory: 64 << 20}, cgPath)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundles", id)
	os.MkdirAll(bundle, 0o700)
	b, _ := json.Marshal(conf)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600)
	cmd := exec.Command(rt.runc, "--root", filepath.Join(dir, "state"), "run", "-d", "--bundle", bundle, id)
	// Standard streams to /dev/null: the detached container keeps them open.
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run -d: %v", err)
	}
	list := func() string {
		out, _ := exec.Command(rt.runc, "--root", filepath.Join(dir, "state"), "list", "-q").Output()
		return string(out)
	}
	if !strings.Contains(list(), id) {
		t.Fatal("the container is not running")
	}
	if _, err := NewRuntime(RuntimeConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list(), id) {
		t.Fatal("the left-over container is still there")
	}
	if _, err := os.Stat(bundle); err == nil {
		t.Fatal("its bundle is still there")
	}
	if m, _ := filepath.Glob(filepath.Join(cgroupFS, "*", cg.rel)); len(m) > 0 {
		t.Fatalf("its cgroups are still there: %v", m)
	}
}
