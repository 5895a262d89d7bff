package sandbox

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute/model"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
)

// heldOutInput is the held-out digits as one work unit.
func heldOutInput(n int) []byte {
	held := model.HeldOut()
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		model.FormatDigit(&in, &held[i%len(held)].Digit)
	}
	return in.Bytes()
}

// BenchmarkInferenceNative classifies the 1797 held-out digits in this process: the
// work without the sandbox.
func BenchmarkInferenceNative(b *testing.B) {
	in := heldOutInput(1797)
	net := model.Default()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := net.Classify(io.Discard, bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSandbox runs the digits module on n digits per iteration, with or without a
// compilation cache, and reports the child's compile time and CPU.
func benchSandbox(b *testing.B, n int, cached bool) {
	in := heldOutInput(n)
	r := testRunner(b)
	r.CacheDir = ""
	if cached {
		r.CacheDir = b.TempDir()
	}
	s := Spec{Module: modelwasm.Digits, Stdin: in, MemoryLimit: 64 << 20, Timeout: time.Minute}
	if cached { // fill the cache before timing
		p, err := r.Start(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		if res, err := p.Wait(); err != nil || res.Err != "" {
			b.Fatal(err, res.Err)
		}
	}
	var compile, cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := r.Start(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Wait()
		if err != nil || res.Err != "" || res.ExitCode != 0 {
			b.Fatalf("err %v, %q, exit %d: %s", err, res.Err, res.ExitCode, res.Stderr)
		}
		if n > 0 && bytes.Count(res.Stdout, []byte("\n")) != n {
			b.Fatalf("%d answers for %d digits", bytes.Count(res.Stdout, []byte("\n")), n)
		}
		compile += res.Compile
		cpu += res.Usage.CPU
	}
	b.ReportMetric(float64(compile.Milliseconds())/float64(b.N), "compile-ms/op")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "child-cpu-ms/op")
}

// BenchmarkInferenceSandbox is the same work as BenchmarkInferenceNative in a child
// process under wazero, compiling the module each time.
func BenchmarkInferenceSandbox(b *testing.B) { benchSandbox(b, 1797, false) }

// BenchmarkInferenceSandboxCached is the same with a warm compilation cache.
func BenchmarkInferenceSandboxCached(b *testing.B) { benchSandbox(b, 1797, true) }

// BenchmarkStartCompile is a job with no work: start the child, compile, instantiate,
// exit.
func BenchmarkStartCompile(b *testing.B) { benchSandbox(b, 0, false) }

// BenchmarkStartCached is a job with no work and a warm compilation cache.
func BenchmarkStartCached(b *testing.B) { benchSandbox(b, 0, true) }

// BenchmarkFirstResult is the time from Start to the answer for one digit, with a warm
// cache: a provider's time to first result.
func BenchmarkFirstResult(b *testing.B) { benchSandbox(b, 1, true) }
