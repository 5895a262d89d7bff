package compute_test

import (
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/compute"
)

const testImage = "127.0.0.1:5000/jobs/digits@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestImageOrders: an order runs a module or a pinned image, never both or neither;
// an image order is leased only to a provider offering the "oci" runtime, cheaper
// WebAssembly-only offers notwithstanding, and its lease carries the reference.
func TestImageOrders(t *testing.T) {
	f := newFixture(t, compute.Config{})
	tenant, _ := f.account(100_000_000)
	base := compute.OrderRequest{Units: [][]byte{{1}, {2}}, Cores: 1, Memory: 64 << 20, MaxPrice: 10 * satPerMS, Budget: 1_000_000, NoVerify: true}
	for _, tc := range []struct {
		module []byte
		image  string
		want   string
	}{
		{module, testImage, "not both"},
		{nil, "", "module must be"},
		{nil, "127.0.0.1:5000/jobs/digits:latest", "pinned by digest"},
		{nil, "127.0.0.1:5000/jobs/digits:v1@sha256:" + strings.Repeat("0", 64), "pinned by digest"},
		{nil, "jobs/digits@sha256:" + strings.Repeat("0", 64), "registry-host"},
		{nil, "127.0.0.1:5000/jobs/digits@sha256:" + strings.Repeat("0", 63), "pinned by digest"},
		{nil, "127.0.0.1:5000/" + strings.Repeat("a", 600) + "@sha256:" + strings.Repeat("0", 64), "over 512 bytes"},
		{nil, testImage, "16 MiB of memory per core"}, // with 8 MiB, below
	} {
		req := base
		if tc.want == "16 MiB of memory per core" {
			req.Memory = 8 << 20
		}
		req.Module, req.Image = tc.module, tc.image
		if _, err := f.b.PlaceOrder(f.ctx, tenant, req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("module %d bytes, image %q: %v, want an error about %q", len(tc.module), tc.image, err, tc.want)
		}
	}

	// Runtimes an offer may list.
	acct, _ := f.account(0)
	for _, rts := range [][]string{{"docker"}, {"oci", "oci"}} {
		_, err := f.b.Register(acct, compute.ProviderRequest{Name: "bad", PayoutAddress: payAddr(t, 9), Resources: compute.Resources{Cores: 1, Memory: 1 << 30, Runtimes: rts}})
		if err == nil {
			t.Errorf("runtimes %v accepted", rts)
		}
	}

	wasmOnly := f.provider("wasm-only", 1, satPerMS) // lists no runtimes: WebAssembly only
	ociAcct, _ := f.account(0)
	v, err := f.b.Register(ociAcct, compute.ProviderRequest{Name: "oci", PayoutAddress: payAddr(t, 2), Price: 2 * satPerMS,
		Resources: compute.Resources{Cores: 2, Memory: 1 << 30, Runtimes: []string{compute.RuntimeWasm, compute.RuntimeOCI}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Resources.Runtimes; len(got) != 2 || got[1] != compute.RuntimeOCI {
		t.Fatalf("runtimes %v", got)
	}
	withOCI := testProvider{ociAcct, v.ID, payAddr(t, 2)}

	req := base
	req.Image, req.Args = testImage, []string{"--fast"}
	o, err := f.b.PlaceOrder(f.ctx, tenant, req)
	if err != nil {
		t.Fatal(err)
	}
	offers, err := f.b.OrderOffers(tenant, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 1 || offers[0].Provider != withOCI.id {
		t.Fatalf("offers for an image order: %+v, want the OCI provider's only", offers)
	}
	if w := f.work(wasmOnly); len(w) != 0 {
		t.Fatalf("the WebAssembly-only provider got %+v", w)
	}
	w := f.lease(withOCI)
	if w.Image != testImage || len(w.Module) != 0 || len(w.Units) != 2 || w.Args[0] != "--fast" {
		t.Fatalf("lease %+v", w)
	}
	// A module order still goes to the cheapest provider, the one without OCI.
	m := f.order(tenant, 1, 1_000_000, true)
	if m.Leases[0].Provider != wasmOnly.id {
		t.Fatalf("module order leased to %s", m.Leases[0].Provider)
	}
}
