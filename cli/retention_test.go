package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
	"github.com/hashgrid/hashgrid/sqlite"
)

// TestShareRetentionConfig checks share_retention's default, file key, flag and
// validation.
func TestShareRetentionConfig(t *testing.T) {
	env := Env{Stderr: &bytes.Buffer{}}
	if got := DefaultPoolConfig().ShareRetention; got != defaultShareRetention || got <= 0 {
		t.Fatalf("default share retention %v, want %v", got, defaultShareRetention)
	}
	file := writeFile(t, "pool.toml", minimalPoolTOML()+"share_retention = \"48h\"\n")
	cfg, err := parsePoolFlags([]string{"--config", file}, env)
	if err != nil || cfg.ShareRetention != 48*time.Hour {
		t.Fatalf("share_retention from the file: %v, %v; want 48h", cfg.ShareRetention, err)
	}
	cfg, err = parsePoolFlags([]string{"--config", file, "--share-retention", "0"}, env)
	if err != nil || cfg.ShareRetention != 0 {
		t.Fatalf("--share-retention 0 over the file: %v, %v; want 0 (keep every share)", cfg.ShareRetention, err)
	}
	cfg, err = parsePoolFlags([]string{"--config", file, "--share-retention", "-1h"}, env)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "--share-retention -1h0m0s is negative") {
		t.Fatalf("negative share retention: got %v", err)
	}
}

// TestRunRetention runs the pool's retention on a real store without a payout scheme:
// shares older than the retention go, younger ones and the summaries stay; with a
// retention of 0 nothing goes.
func TestRunRetention(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "hashgrid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	testRunRetention(t, store)
}

// TestRunRetentionPostgres is TestRunRetention on a PostgreSQL store.
func TestRunRetentionPostgres(t *testing.T) {
	store, err := postgres.Open(context.Background(), pgtest.FreshDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	testRunRetention(t, store)
}

func testRunRetention(t *testing.T, store interface {
	hashgrid.ShareStore
	PrunedSeq(context.Context) (uint64, error)
}) {
	ctx := context.Background()
	now := time.Now()
	var shares []hashgrid.Share
	for i := range 600 {
		// One share a minute for ten hours, the newest a minute old.
		shares = append(shares, hashgrid.Share{Seq: uint64(i + 1), Time: now.Add(-time.Duration(600-i) * time.Minute),
			Address: "bcrt1qretention", Worker: fmt.Sprint("w", i%3), JobID: "j", Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne})
	}
	for i := 0; i < len(shares); i += 50 {
		if err := store.AddShares(ctx, shares[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	runRetention(ctx, PoolConfig{ShareRetention: 0}, store, nil, log) // returns at once
	if p, _ := store.PrunedSeq(ctx); p != 0 {
		t.Fatalf("retention 0 pruned through %d", p)
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { runRetention(rctx, PoolConfig{ShareRetention: 5 * time.Hour}, store, nil, log); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	var p uint64
	for p < 300 && time.Now().Before(deadline) { // one pass, batch by batch
		p, _ = store.PrunedSeq(ctx)
		time.Sleep(10 * time.Millisecond) // polling the store, with a deadline
	}
	cancel()
	<-done
	// Shares 1..300 are at least five hours old; 301 was younger when the pass ran.
	if p, _ = store.PrunedSeq(ctx); p != 300 {
		t.Fatalf("retention of 5h over 10h of shares pruned through %d, want 300", p)
	}
	acc, _, _, err := store.Totals(ctx)
	if err != nil || acc != 600 {
		t.Fatalf("totals after pruning: %d accepted, %v; want all 600 counted", acc, err)
	}
}
