package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/payout"
)

// Environment of TestPayoutCrashPostgresChild: the database and the export directory.
const (
	crashURLEnv = "HASHGRID_PG_PAYOUT_CRASH_URL"
	crashDirEnv = "HASHGRID_PG_PAYOUT_CRASH_DIR"
)

func crashMiner(i int) string {
	switch i % 3 {
	case 0:
		return regtest.TestAddress()
	case 1:
		return regtest.TestAddressP2PKH()
	}
	return fmt.Sprintf("miner%02d", i%40)
}

// openCrashService opens the payout service as package payout's crash test does, with
// its ledger and its state in PostgreSQL.
func openCrashService(tb testing.TB, url, dir string) (*payout.Service, *Ledger) {
	tb.Helper()
	ctx := context.Background()
	led, err := OpenLedger(ctx, url, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := OpenPayoutState(ctx, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := payout.OpenWith(payout.Config{Scheme: payout.PPLNS, Network: &chaincfg.RegressionNetParams,
		PoolAddress: regtest.TestAddress(), Window: 1 << 40, PayoutThreshold: 5000, ExportDir: dir}, st, led, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return svc, led
}

// TestPayoutCrashPostgresChild is the process TestPayoutCrashPostgres kills: it
// credits miners and runs payouts in a loop until it is killed.
func TestPayoutCrashPostgresChild(t *testing.T) {
	url, dir := os.Getenv(crashURLEnv), os.Getenv(crashDirEnv)
	if url == "" || dir == "" {
		t.Skip("run by TestPayoutCrashPostgres")
	}
	ctx := context.Background()
	svc, led := openCrashService(t, url, dir)
	fmt.Println("ready")
	for i := 0; ; i++ {
		// Credits are keyed by i with amounts fixed by i: a restarted child replays
		// the same entries, which the ledger takes as the no-ops they are.
		amt := int64(1000 + (i*7919)%50000)
		if _, err := led.Post(ctx, ledger.Tx{Key: fmt.Sprintf("seed:%d", i), Postings: []ledger.Posting{
			{Account: payout.AcctRewards, Amount: -amt}, {Account: payout.MinerAccount(crashMiner(i), "balance"), Amount: amt}}}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			if _, err := svc.PayoutRun(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPayoutCrashPostgres is package payout's TestPayoutCrash with the ledger and the
// payout state in PostgreSQL: a process killed (SIGKILL) at random moments of payout
// runs, five times, and restarted, has debited and exported no balance twice, every
// batch is whole (ledger entry, record and file agree), and the books balance.
func TestPayoutCrashPostgres(t *testing.T) {
	url := freshDatabase(t)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(11, 12))
	for kill := 0; kill < 5; kill++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPayoutCrashPostgresChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashURLEnv+"="+url, crashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start: %q %v\n%s", buf, err, stderr.String())
		}
		go io.Copy(io.Discard, out)
		time.Sleep(time.Duration(300+r.IntN(900)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child ended by itself (%v):\n%s", err, stderr.String())
		}
	}

	ctx := context.Background()
	svc, led := openCrashService(t, url, dir)
	defer led.Close()
	defer svc.Close()
	// The restarted service finishes whatever batch the last kill interrupted.
	if _, err := svc.PayoutRun(ctx); err != nil {
		t.Fatal(err)
	}
	if err := led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	batches, err := svc.Batches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) < 5 {
		t.Fatalf("only %d batches: the children did not get far", len(batches))
	}
	inBatches := map[string]int64{}
	for _, b := range batches {
		if b.Status != payout.BatchExported {
			t.Errorf("batch %d is %s after recovery", b.N, b.Status)
		}
		e, err := led.Entry(ctx, fmt.Sprintf("payout:%d", b.N))
		if err != nil {
			t.Fatalf("batch %d has no ledger entry: %v", b.N, err)
		}
		debits := map[string]int64{}
		for _, p := range e.Postings {
			if strings.HasSuffix(p.Account, ":balance") {
				debits[p.Account] -= p.Amount
			}
		}
		var f payout.ExportFile
		data, err := os.ReadFile(svc.BatchPath(b.N))
		if err != nil {
			t.Fatalf("batch %d not exported: %v", b.N, err)
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(f.Items) != fmt.Sprint(b.Items) {
			t.Errorf("batch %d: file %v, record %v", b.N, f.Items, b.Items)
		}
		seen := map[string]bool{}
		for _, it := range b.Items {
			if seen[it.Address] {
				t.Errorf("batch %d pays %s twice", b.N, it.Address)
			}
			seen[it.Address] = true
			if debits[payout.MinerAccount(it.Address, "balance")] != it.Amount {
				t.Errorf("batch %d: pays %s %d, debited %d", b.N, it.Address, it.Amount, debits[payout.MinerAccount(it.Address, "balance")])
			}
			inBatches[it.Address] += it.Amount
		}
	}
	// Every satoshi credited is in exactly one place: a balance, or one batch.
	bals, err := led.Balances(ctx, "miner:")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for acct, v := range bals {
		if v < 0 {
			t.Errorf("%s = %d", acct, v)
		}
		total += v
		if addr, ok := strings.CutSuffix(strings.TrimPrefix(acct, "miner:"), ":pending"); ok && v != inBatches[addr] {
			t.Errorf("%s pending %d, its batches pay %d", addr, v, inBatches[addr])
		}
	}
	rewards, err := led.Balance(ctx, payout.AcctRewards)
	if err != nil {
		t.Fatal(err)
	}
	if total != -rewards {
		t.Errorf("miners hold %d, %d was credited", total, -rewards)
	}
	t.Logf("%d batches across 5 kills, %d sat credited", len(batches), -rewards)
}
