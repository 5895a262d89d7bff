package cli

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestRelease builds this machine's release binary with scripts/release and checks
// it is static (no ELF interpreter, no shared library: it runs in a FROM scratch
// image with no libc), reports the stamped version, and that the Dockerfile stamps
// the same variable and ends FROM scratch. It also checks what `go install
// github.com/hashgrid/hashgrid/cmd/hashgrid@latest` needs of the module: no replace
// or exclude directive (go install refuses them) and a main package at cmd/hashgrid.
func TestRelease(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("checks a Linux ELF binary")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	dist := t.TempDir()
	const version = "v0.0.0-releasetest"
	cmd := exec.Command(filepath.Join(root, "scripts", "release"), version, runtime.GOOS+"/"+runtime.GOARCH)
	cmd.Env = append(os.Environ(), "HASHGRID_DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, out)
	}
	bin := filepath.Join(dist, "hashgrid-"+version+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for a dynamic loader: not static", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	if f.Section(".debug_info") != nil {
		t.Errorf("%s is not stripped", bin)
	}
	// An empty environment: nothing from this machine is needed to start.
	run := exec.Command(bin, "version")
	run.Env = []string{}
	out, err := run.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "hashgrid "+version+" ") {
		t.Errorf("%s version: %v %q, want hashgrid %s …", bin, err, out, version)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil || !strings.Contains(string(sums), filepath.Base(bin)) {
		t.Errorf("SHA256SUMS: %v %q", err, sums)
	}

	docker, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(docker), -1)
	if len(froms) < 2 || froms[len(froms)-1][1] != "scratch" {
		t.Errorf("Dockerfile: stages %v, want a build stage and a final FROM scratch", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X github.com/hashgrid/hashgrid/cli.version=", "./cmd/hashgrid", "USER 65532"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	mod, err := exec.Command("go", "mod", "edit", "-json", filepath.Join(root, "go.mod")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var gm struct {
		Module  struct{ Path string }
		Replace []any
		Exclude []any
	}
	if err := json.Unmarshal(mod, &gm); err != nil {
		t.Fatal(err)
	}
	if gm.Module.Path != "github.com/hashgrid/hashgrid" || len(gm.Replace) > 0 || len(gm.Exclude) > 0 {
		t.Errorf("go.mod: module %q, %d replace, %d exclude: go install …@latest needs the public path and neither directive", gm.Module.Path, len(gm.Replace), len(gm.Exclude))
	}
	name, err := exec.Command("go", "list", "-C", root, "-f", "{{.Name}}", "./cmd/hashgrid").Output()
	if err != nil || strings.TrimSpace(string(name)) != "main" {
		t.Errorf("cmd/hashgrid: package %q (%v), want main", name, err)
	}
}
