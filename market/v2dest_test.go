package market

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// v2Front serves d's pool to Stratum V2 clients through the bridge, and returns its
// stratum2+tcp URL.
func v2Front(t *testing.T, d *fakeDest) string {
	t.Helper()
	dir := t.TempDir()
	auth, err := noise.LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := noise.LoadOrCreateIdentity(dir, auth, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := bridge.NewServer(d.srv, bridge.Config{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bs.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bs.Shutdown(ctx)
	})
	return noise.FormatURL(l.Addr().String(), auth.PublicKey())
}

// TestV2Destination: an order whose pool speaks Stratum V2 (a stratum2+tcp URL with
// the pool's authority key). The market opens an extended channel, hands its jobs to
// V1 sellers and forwards their shares as SubmitSharesExtended: the pool accepts
// them, the market counts what the pool counted, and the books balance. An order
// whose URL names another authority key never connects: the pool's certificate is
// refused and the order pauses.
func TestV2Destination(t *testing.T) {
	dest := startDest(t, 0.0003)
	url := v2Front(t, dest)
	tm := startMarket(t, nil)
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: url, PoolUser: regtest.TestAddress() + ".bought", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 60*time.Second, "shares accepted by the V2 pool", func() bool { return tm.view(t, acct, o.ID).SharesAccepted >= 8 })
	if _, err := tm.CancelOrder(acct, o.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the order refunded", func() bool { return tm.view(t, acct, o.ID).Remaining == 0 })
	v := tm.view(t, acct, o.ID)
	n, w := dest.stats(regtest.TestAddress() + ".bought")
	if v.SharesRejected != 0 || n != v.SharesAccepted || w.Float() != v.AcceptedWork {
		t.Errorf("market: %d accepted (%g work), %d rejected; the V2 pool recorded %d (%g)", v.SharesAccepted, v.AcceptedWork, v.SharesRejected, n, w.Float())
	}
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}

	// Another authority's key in the URL: the pool's certificate does not verify.
	other, err := noise.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	hp, _, _ := noise.ParseURL(url)
	bad, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: noise.FormatURL(hp, other.PublicKey()), PoolUser: "x", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the order with the wrong key paused", func() bool { return tm.view(t, acct, bad.ID).Status == StatusPaused })
	if vb := tm.view(t, acct, bad.ID); vb.SharesAccepted != 0 || !strings.Contains(vb.Reason, "destination") {
		t.Errorf("order with a wrong authority key: %+v", vb)
	}
}
