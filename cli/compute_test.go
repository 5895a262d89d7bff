package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/model"
)

// TestComputeExampleAndScore writes the example job, answers its units with the
// classifier run natively (what a provider's sandbox prints), and scores them; then
// spoils answers and checks that score counts them wrong, and that a missing output
// or a short one is an error, not a score.
func TestComputeExampleAndScore(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := Run(context.Background(), args, nil, nil, &out, io.Discard)
		return out.String(), err
	}
	if _, err := run("compute", "example", "--dir", dir, "--units", "3", "--per-unit", "20"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("compute", "example", "--dir", dir, "--units", "100", "--per-unit", "1000"); !errors.Is(err, ErrUsage) {
		t.Errorf("more digits than held out: %v, want a usage error", err)
	}
	units, _ := filepath.Glob(filepath.Join(dir, "units", "*.txt"))
	if len(units) != 3 {
		t.Fatalf("%d units written, want 3", len(units))
	}
	outs := filepath.Join(dir, "outputs")
	os.MkdirAll(outs, 0o755)
	net := model.Default()
	for i, u := range units {
		in, err := os.Open(u)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := net.Classify(&b, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		os.WriteFile(outputName(outs, i), b.Bytes(), 0o644)
	}
	glob := filepath.Join(dir, "units", "*.txt")
	out, err := run("compute", "score", "--units", glob, "--outputs", outs, "--min-accuracy", "0.9")
	if err != nil || !strings.Contains(out, "of 60 digits right") {
		t.Fatalf("score: %q, %v", out, err)
	}
	var right int
	if _, err := fmtSscan(out, &right); err != nil || right < 54 {
		t.Fatalf("score %q: %d right, want at least 54 of 60", out, right)
	}
	// Every answer of unit 0 says 99: wrong for all 20 digits.
	os.WriteFile(outputName(outs, 0), []byte(strings.Repeat("99 0 0 0 0 0 0 0 0 0 0\n", 20)), 0o644)
	out, err = run("compute", "score", "--units", glob, "--outputs", outs)
	var spoiled int
	if _, serr := fmtSscan(out, &spoiled); err != nil || serr != nil || spoiled > right-17 {
		t.Errorf("after spoiling unit 0: %q (%v): %d right, want at most %d", out, err, spoiled, right-17)
	}
	if _, err := run("compute", "score", "--units", glob, "--outputs", outs, "--min-accuracy", "0.99"); err == nil {
		t.Error("score above the accuracy reached: no error")
	}
	os.WriteFile(outputName(outs, 1), []byte("3 1 2 3 4 5 6 7 8 9 10\n"), 0o644)
	if _, err := run("compute", "score", "--units", glob, "--outputs", outs); err == nil || !strings.Contains(err.Error(), "1 answers") {
		t.Errorf("a short output: %v, want an error counting the answers", err)
	}
	os.Remove(outputName(outs, 2))
	if _, err := run("compute", "score", "--units", glob, "--outputs", outs); err == nil {
		t.Error("a missing output: no error")
	}
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("k\n"), 0o600)
	if _, err := run("compute", "submit", "--key", key, "--module", filepath.Join(dir, "digits.wasm")); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--units") {
		t.Errorf("submit without --units: %v, want a usage error", err)
	}
	const image = "127.0.0.1:5000/jobs/digits@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if _, err := run("compute", "submit", "--key", key, "--module", filepath.Join(dir, "digits.wasm"), "--image", image, "--units", glob); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "one of them") {
		t.Errorf("submit with a module and an image: %v, want a usage error", err)
	}
	if req, err := orderRequest("", image, glob, []string{"x"}, 1, 64, 1, 1, 1, "", false, false, false); err != nil || req.Image != image || req.Module != nil || len(req.Units) == 0 {
		t.Errorf("an image order request: %+v %v", req.Image, err)
	}
	if req, err := orderRequest(filepath.Join(dir, "digits.wasm"), "", "", []string{"serve"}, 1, 64, 1, 1, 1, "", false, false, true); err != nil || req.Kind != compute.KindService || len(req.Units) != 0 || len(req.Module) == 0 {
		t.Errorf("a service order request: kind %q, %d units, %v", req.Kind, len(req.Units), err)
	}
	if _, err := run("compute", "submit", "--key", key, "--service", "--module", filepath.Join(dir, "digits.wasm"), "--units", glob); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "no --units") {
		t.Errorf("a service with units: %v, want a usage error", err)
	}
	if _, err := run("compute", "frobnicate"); !errors.Is(err, ErrUsage) {
		t.Errorf("unknown subcommand: %v, want a usage error", err)
	}
}

func fmtSscan(s string, n *int) (int, error) { return fmt.Sscanf(s, "%d", n) }
