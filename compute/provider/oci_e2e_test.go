package provider_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
	"github.com/hashgrid/hashgrid/compute/oci/ocitest"
	"github.com/hashgrid/hashgrid/compute/provider"
)

// startOCIAgent starts an agent that, having discovered runc here, offers OCI jobs
// besides WebAssembly, reaching the test's loopback registry over plain HTTP.
func (l *loop) startOCIAgent(name, key string, addrByte byte, price int64, registry string) *runningAgent {
	l.t.Helper()
	ociJobs, err := provider.DiscoverOCI(l.ctx, provider.OCIConfig{Dir: filepath.Join(l.t.TempDir(), "oci"), InsecureRegistries: []string{registry}})
	if err != nil {
		l.t.Fatalf("runc is installed and this is root, yet: %v", err)
	}
	addr := payAddr(l.t, addrByte)
	a, err := provider.New(provider.Config{
		Client: &compute.Client{Base: l.base, Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}},
		Name:   name, PayoutAddress: addr, Price: price,
		Resources: compute.Resources{Cores: 1, Memory: 1 << 30},
		Runner:    l.runner, OCI: ociJobs, Wait: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLog{T: l.t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("agent", name),
	})
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{a: a, addr: addr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := a.Run(ctx); err != nil {
			l.t.Errorf("agent %s: %v", name, err)
		}
	}()
	l.t.Cleanup(func() { cancel(); <-r.done })
	waitFor(l.t, 30*time.Second, "agent "+name+" registered", func() bool { return a.ID() != "" })
	return r
}

// TestImageLeaseEndToEnd is issue 19's OCI check on loopback: the digit classifier,
// built as a static Linux program and pushed as an image to a loopback registry, is
// ordered by a tenant; a cheaper provider without a container runtime is passed over;
// a provider that discovered runc fetches the image and runs every unit in a
// container; a second one re-runs the spot-checked units; the outputs are the native
// network's byte for byte; the lease is metered from the containers' cgroups, settled
// report by report, and released to the provider once the spot check passed; the
// ledger balances to the satoshi. The same units run as WebAssembly on the other
// provider, for the log's comparison.
func TestImageLeaseEndToEnd(t *testing.T) {
	ocitest.NeedRuntime(t)
	registry := ocitest.Registry(t)
	ref := ocitest.PushProgram(t, registry, "jobs/digits", ocitest.BuildGo(t, "github.com/hashgrid/hashgrid/compute/model/wasm/digits"))

	l := newLoop(t)
	const deposit = 100_000_000
	tenant, key := l.account(deposit)
	_, keyW := l.account(0)
	_, key0 := l.account(0)
	_, key1 := l.account(0)
	c := &compute.Client{Base: l.base, Key: key}

	wasmOnly := l.startAgent("wasm-only", keyW, 20, satPerMS, false)
	o0 := l.startOCIAgent("oci-0", key0, 21, 2*satPerMS, registry)
	o1 := l.startOCIAgent("oci-1", key1, 22, 3*satPerMS, registry)
	offers, err := c.Offers(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offers {
		if hasOCI := slices.Contains(o.Resources.Runtimes, compute.RuntimeOCI); hasOCI != (o.Name != "wasm-only") {
			t.Fatalf("offer %s lists runtimes %v", o.Name, o.Resources.Runtimes)
		}
	}

	units, want := digitUnits(t, 0, 6, 50)
	start := time.Now()
	v, err := c.PlaceOrder(l.ctx, compute.OrderRequest{Image: ref, Units: units, Cores: 1, Memory: 128 << 20,
		MaxPrice: 5 * satPerMS, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	v = l.waitOrder(c, v.ID, "closed", 120*time.Second, func(v compute.OrderView) bool { return v.Closed })
	took := time.Since(start)
	if v.Status != compute.OrderDone || v.Verdict != "pass" || v.Checked < 1 {
		t.Fatalf("image order %+v: want done, spot check passed", v)
	}
	outs, err := c.Outputs(l.ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	for u, o := range outs {
		if !o.Done || o.ExitCode != 0 || o.Err != "" || !bytes.Equal(o.Stdout, want[u]) {
			t.Fatalf("unit %d: %+v\nwant stdout %q", u, o, want[u])
		}
	}
	jl := jobLease(t, v)
	if jl.Provider != o0.a.ID() {
		t.Fatalf("job lease on %s, want the cheapest OCI provider %s (not %s)", jl.Provider, o0.a.ID(), wasmOnly.a.ID())
	}
	for _, le := range v.Leases {
		if le.Provider == wasmOnly.a.ID() {
			t.Fatalf("lease %s on the provider without a container runtime", le.ID)
		}
	}
	es, err := l.led.Entries(l.ctx, "compute:held:"+jl.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	settles := 0
	for _, e := range es {
		if strings.HasPrefix(e.Key, "compute:settle:") {
			settles++
		}
	}
	if jl.CPUMS <= 0 || jl.Charged <= 0 || settles < 1 || jl.Settled != "released" {
		t.Fatalf("job lease %+v, %d settlements: want CPU time metered, charged report by report, released", jl, settles)
	}
	pv, err := o0.a.Status(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pv.Earned <= 0 || pv.Payable != pv.Earned {
		t.Fatalf("provider oci-0: earned %d, payable %d", pv.Earned, pv.Payable)
	}
	t.Logf("image order: %d units in %v, job lease %d ms of CPU, %d ms of wall, %d reports, %d settlements, %d sat charged; provider earned %d sat",
		len(units), took.Round(time.Millisecond), jl.CPUMS, jl.WallMS, jl.Reports, settles, jl.Charged, pv.Earned)

	// The same units as WebAssembly, on the provider without containers.
	start = time.Now()
	w, err := c.PlaceOrder(l.ctx, compute.OrderRequest{Module: modelwasm.Digits, Units: units, Cores: 1, Memory: 128 << 20,
		MaxPrice: satPerMS, Budget: 10_000_000, NoVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	w = l.waitOrder(c, w.ID, "closed", 120*time.Second, func(v compute.OrderView) bool { return v.Closed })
	wl := jobLease(t, w)
	t.Logf("WebAssembly order of the same units: %v, job lease %d ms of CPU, %d ms of wall, %d sat", time.Since(start).Round(time.Millisecond),
		wl.CPUMS, wl.WallMS, wl.Charged)

	l.checkBooks(deposit, []string{tenant}, []*runningAgent{wasmOnly, o0, o1})
}
