package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
)

// TestMarketStateInPoolDatabase: `hashgrid market` on the pool's book keeps its
// state in the same database (--pool-data's ledger.db, or --postgres), importing the
// market.json an earlier run on a book of its own left in --data, once, and never
// writing that file again.
func TestMarketStateInPoolDatabase(t *testing.T) {
	for _, c := range []struct {
		name string
		pg   bool
	}{{"pool-data", false}, {"postgres", true}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			data := t.TempDir()
			base := MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: data, Network: "regtest", LogLevel: "warn", AllowPrivateDestinations: true}
			mr, stop := startMarket(t, base)
			id1, key1, err := mr.Market.CreateAccount()
			if err != nil {
				t.Fatal(err)
			}
			stop()
			jsonPath := filepath.Join(data, "market.json")
			before, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatalf("the market on its own book wrote no market.json: %v", err)
			}

			cfg := base
			var open func() market.StateStore
			if c.pg {
				cfg.Postgres = pgtest.FreshDatabase(t)
				open = func() market.StateStore {
					s, err := postgres.OpenMarketState(ctx, cfg.Postgres, nil)
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			} else {
				cfg.PoolData = t.TempDir()
				l, err := ledger.Open(filepath.Join(cfg.PoolData, "ledger.db"), nil)
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				open = func() market.StateStore {
					s, err := market.OpenSQLiteState(ctx, filepath.Join(cfg.PoolData, "ledger.db"))
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			}
			for run := range 2 {
				mr, stop = startMarket(t, cfg)
				if got, err := mr.Market.Authenticate(key1); err != nil || got != id1 {
					t.Fatalf("run %d: the key of the imported account: %q, %v", run, got, err)
				}
				if run == 0 {
					id2, _, err := mr.Market.CreateAccount()
					if err != nil {
						t.Fatal(err)
					}
					if err := mr.Market.Deposit(ctx, id2, 5000, "d-"+id2); err != nil {
						t.Fatal(err)
					}
					if _, err := mr.Market.PlaceOrder(ctx, id2, market.OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000}); err != nil {
						t.Fatal(err)
					}
				}
				stop()
			}
			if after, _ := os.ReadFile(jsonPath); string(after) != string(before) {
				t.Error("the market on the pool's database rewrote market.json")
			}
			s := open()
			defer s.Close()
			st, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Accounts) != 2 || len(st.Orders) != 1 || st.Orders[0].Funded != 1000 {
				t.Errorf("the database holds %d accounts and %d orders (%+v), want 2 and one funded with 1000", len(st.Accounts), len(st.Orders), st.Orders)
			}
		})
	}
}
