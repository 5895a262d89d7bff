package pool_test

import (
	"encoding/binary"
	"testing"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
)

// soloAddresses returns n distinct mainnet P2WPKH addresses.
func soloAddresses(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, n)
	for i := range out {
		var h [20]byte
		binary.BigEndian.PutUint64(h[:], uint64(i)+1)
		a, err := address.NewAddressWitnessPubKeyHash(h[:], &chaincfg.MainNetParams)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = a.EncodeAddress()
	}
	return out
}

// BenchmarkSoloNewTip is the pool's side of a new tip under SOLO: a 3,000-transaction
// template, then the job of each of 10,000 payout addresses as a broadcast asks for
// them (connections of one address share one).
func BenchmarkSoloNewTip(b *testing.B) {
	addrs := soloAddresses(b, 10_000)
	// Output scripts are looked up, not decoded, as payout.Service's SOLO outputs do.
	scripts := make(map[string][]byte, len(addrs)+1)
	for _, a := range append(addrs, soloPoolAddress) {
		sc, err := pool.AddressScript(a, &chaincfg.MainNetParams)
		if err != nil {
			b.Fatal(err)
		}
		scripts[a] = sc
	}
	solo := func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		if finder == "" {
			return []pool.Output{{Value: value, Script: scripts[soloPoolAddress]}}, "", nil
		}
		return []pool.Output{{Value: value, Script: scripts[finder]}}, finder, nil
	}
	p, err := pool.New(pool.Config{Network: &chaincfg.MainNetParams, Outputs: solo}, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	tmpls := [2]*node.Template{bench.Template(900_000, 3000), bench.Template(900_001, 3000)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := p.UpdateTemplate(tmpls[i%2], true); err != nil {
			b.Fatal(err)
		}
		if n := pool.JobsForAddresses(p, addrs); n != len(addrs) {
			b.Fatalf("%d of %d addresses got their own layout", n, len(addrs))
		}
	}
}
