package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/hashgrid/hashgrid/compute/model"
)

var update = flag.Bool("update", false, "rewrite digits.wasm from ./digits")

// TestDigitsBuiltFromSource rebuilds the module and checks that the committed one is
// byte for byte what the source and weights make today.
func TestDigitsBuiltFromSource(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to rebuild digits.wasm: %v", err)
	}
	out := filepath.Join(t.TempDir(), "digits.wasm")
	cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", out, "./digits")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=", "GOWASM=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("digits.wasm", got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote digits.wasm, %d bytes", len(got))
		return
	}
	if !bytes.Equal(got, Digits) {
		t.Errorf("digits.wasm (%d bytes) is not what ./digits builds today (%d bytes): run go test ./compute/model/wasm -run TestDigitsBuiltFromSource -update", len(Digits), len(got))
	}
}

// cache keeps compiled modules across runModule calls: compiling the 3 MB module
// takes seconds, running it milliseconds.
var cache = wazero.NewCompilationCache()

// runModule runs a module in-process with wazero, the way compute/sandbox's child
// does but without a child, and returns its stdout, stderr and exit code.
func runModule(t *testing.T, module []byte, stdin []byte, files fstest.MapFS, args ...string) (stdout, stderr []byte, code uint32) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	var out, errb bytes.Buffer
	cfg := wazero.NewModuleConfig().WithArgs(append([]string{"digits"}, args...)...).
		WithStdin(bytes.NewReader(stdin)).WithStdout(&out).WithStderr(&errb)
	if files != nil {
		cfg = cfg.WithFSConfig(wazero.NewFSConfig().WithFSMount(files, "/in"))
	}
	_, err := r.InstantiateWithConfig(ctx, module, cfg)
	if err != nil {
		exit, ok := err.(*sys.ExitError)
		if !ok {
			t.Fatalf("run module: %v", err)
		}
		code = exit.ExitCode()
	}
	return out.Bytes(), errb.Bytes(), code
}

// TestDigitsMatchesNative checks that the module prints exactly what the native
// model prints, on every digit of the held-out and training sets.
func TestDigitsMatchesNative(t *testing.T) {
	tra, err := os.ReadFile("../data/optdigits.tra")
	if err != nil {
		t.Fatal(err)
	}
	train, err := model.ParseExamples(bytes.NewReader(tra))
	if err != nil {
		t.Fatal(err)
	}
	examples := append(model.HeldOut(), train...)
	var input bytes.Buffer
	for i := range examples {
		model.FormatDigit(&input, &examples[i].Digit)
	}
	var want bytes.Buffer
	if err := model.Default().Classify(&want, bytes.NewReader(input.Bytes())); err != nil {
		t.Fatal(err)
	}

	got, stderr, code := runModule(t, Digits, input.Bytes(), nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("module output (%d bytes) differs from the native model's (%d bytes)", len(got), len(want.Bytes()))
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != len(examples) {
		t.Fatalf("%d answer lines for %d digits", len(lines), len(examples))
	}
	for i, line := range lines {
		class, _ := strconv.Atoi(strings.Fields(line)[0])
		if want, _ := model.Default().Predict(&examples[i].Digit); class != want {
			t.Fatalf("digit %d: module says %d, native model %d", i, class, want)
		}
	}
	t.Logf("%d digits, module output identical to native (%d bytes)", len(examples), len(got))

	// The same digits as files under /in, given as arguments, in two parts.
	half := bytes.IndexByte(input.Bytes()[input.Len()/2:], '\n') + input.Len()/2 + 1
	files := fstest.MapFS{
		"a.csv": {Data: input.Bytes()[:half]},
		"b.csv": {Data: input.Bytes()[half:]},
	}
	got, stderr, code = runModule(t, Digits, nil, files, "/in/a.csv", "/in/b.csv")
	if code != 0 || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("from /in files: exit %d, output equal %v: %s", code, bytes.Equal(got, want.Bytes()), stderr)
	}
}

// TestDigitsRejectsBadInput checks that a malformed work unit fails the job with the
// line named, instead of printing a guess.
func TestDigitsRejectsBadInput(t *testing.T) {
	good := strings.Repeat("0,", model.Inputs-1) + "0\n"
	bad := strings.Repeat("0,", model.Inputs-1) + "17\n"
	out, stderr, code := runModule(t, Digits, []byte(good+bad), nil)
	if code != 1 || !strings.Contains(string(stderr), "line 2") {
		t.Errorf("exit %d, stderr %q; want exit 1 naming line 2", code, stderr)
	}
	if n := bytes.Count(out, []byte("\n")); n > 1 {
		t.Errorf("%d answers printed before the bad line; want at most 1", n)
	}
	_, stderr, code = runModule(t, Digits, nil, fstest.MapFS{}, "/in/missing.csv")
	if code != 1 || !strings.Contains(string(stderr), "missing.csv") {
		t.Errorf("missing input: exit %d, stderr %q", code, stderr)
	}
}

// TestDigitsServe runs the module's service mode over a stream of framed requests:
// each answer is what the native model prints for that request's digits, a bad
// request is answered with an error line and the service goes on, and the end of
// the input ends it with exit 0.
func TestDigitsServe(t *testing.T) {
	ex := model.HeldOut()
	var stream bytes.Buffer
	frame := func(b []byte) {
		stream.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		stream.Write(b)
	}
	var want [][]byte
	for i := range 50 {
		var in, out bytes.Buffer
		for j := range i%4 + 1 {
			model.FormatDigit(&in, &ex[(i*4+j)%len(ex)].Digit)
		}
		if err := model.Default().Classify(&out, bytes.NewReader(in.Bytes())); err != nil {
			t.Fatal(err)
		}
		frame(in.Bytes())
		want = append(want, out.Bytes())
		if i == 10 {
			frame([]byte("not a digit\n"))
			want = append(want, nil) // an error line
		}
		if i == 20 {
			frame(bytes.Repeat([]byte{'0'}, 1<<20+1))
			want = append(want, nil)
		}
	}
	got, stderr, code := runModule(t, Digits, stream.Bytes(), nil, "serve")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for i, w := range want {
		if len(got) < 4 {
			t.Fatalf("response %d missing", i)
		}
		n := binary.BigEndian.Uint32(got)
		resp := got[4 : 4+n]
		got = got[4+n:]
		if w == nil {
			if !bytes.HasPrefix(resp, []byte("error: ")) {
				t.Fatalf("response %d to a bad request: %q", i, resp)
			}
			continue
		}
		if !bytes.Equal(resp, w) {
			t.Fatalf("response %d: %q, want %q", i, resp, w)
		}
	}
	if len(got) != 0 {
		t.Fatalf("%d bytes after the last response", len(got))
	}
}
