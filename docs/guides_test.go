// Package docs_test runs the guides in docs/guides as a newcomer would: every ```sh block
// of a guide, in order, in a new empty directory, with the hashgrid binary built from this
// checkout first on PATH. A guide whose commands stop working fails the suite.
package docs_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guideTimeout bounds one guide's run; guides that start services stop them themselves, and
// the harness kills whatever a failed guide left behind.
const guideTimeout = 6 * time.Minute

// shBlock matches a fenced block marked sh. Blocks marked otherwise (console, text, toml)
// are output or reference and are not run.
var shBlock = regexp.MustCompile("(?ms)^```sh\n(.*?)^```")

// Blocks extracts the runnable commands of a guide, in order.
func blocks(md string) []string {
	var out []string
	for _, m := range shBlock.FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestBlocks(t *testing.T) {
	md := "# g\n```sh\necho a\n```\ntext\n```console\n$ nope\n```\n```sh\necho b\necho c\n```\n"
	got := blocks(md)
	want := []string{"echo a\n", "echo b\necho c\n"}
	if len(got) != len(want) {
		t.Fatalf("blocks: got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("block %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestGuides(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hashgrid and runs the guides")
	}
	guides, err := filepath.Glob("guides/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(guides) == 0 {
		t.Fatal("no guides in docs/guides")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "hashgrid"), "./cmd/hashgrid")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, g := range guides {
		t.Run(strings.TrimSuffix(filepath.Base(g), ".md"), func(t *testing.T) {
			md, err := os.ReadFile(g)
			if err != nil {
				t.Fatal(err)
			}
			bs := blocks(string(md))
			if len(bs) == 0 {
				t.Fatalf("%s has no sh blocks to run", g)
			}
			runGuide(t, repo, bin, bs)
		})
	}
}

// runGuide runs a guide's blocks as one bash script in a new directory. Background jobs
// the guide starts are killed when it ends, however it ends.
func runGuide(t *testing.T, repo, bin string, bs []string) {
	t.Helper()
	dir := t.TempDir()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	script.WriteString("trap 'jobs -p | xargs -r kill 2>/dev/null; wait 2>/dev/null || true' EXIT\n")
	for i, b := range bs {
		script.WriteString("echo '>>> block " + strconv.Itoa(i+1) + "' >&2\n")
		script.WriteString(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guideTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "REPO="+repo)
	// The guide's whole process group goes when it ends, so that nothing it started (a
	// node, a pool) outlives a failed or timed-out guide.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	defer func() {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		t.Fatalf("guide failed: %v\n%s", err, tail(out.String(), 12000))
	}
	t.Logf("%s", tail(out.String(), 2000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
