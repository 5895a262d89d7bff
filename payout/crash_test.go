package payout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

const crashDirEnv = "HASHGRID_PAYOUT_CRASH_DIR"

func crashMiner(i int) string {
	// Distinct valid regtest addresses are not needed by the export path: batches
	// carry addresses as text. Two real ones alternate with synthetic names.
	switch i % 3 {
	case 0:
		return regtest.TestAddress()
	case 1:
		return regtest.TestAddressP2PKH()
	}
	return fmt.Sprintf("miner%02d", i%40)
}

func openCrashService(t testing.TB, dir string) (*Service, *ledger.Ledger) {
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Open(Config{Scheme: PPLNS, Network: &chaincfg.RegressionNetParams, PoolAddress: regtest.TestAddress(), Window: 1 << 40,
		PayoutThreshold: 5000, ExportDir: filepath.Join(dir, "payouts")}, filepath.Join(dir, "payout.db"), led, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, led
}

// TestPayoutCrashChild is the process TestPayoutCrash kills: it credits miners and runs
// payouts in a loop until it is killed. It does nothing unless started by that test.
func TestPayoutCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestPayoutCrash")
	}
	ctx := context.Background()
	svc, led := openCrashService(t, dir)
	fmt.Println("ready")
	for i := 0; ; i++ {
		// Credits are keyed by i with amounts fixed by i: a restarted child replays
		// the same entries, which the ledger takes as the no-ops they are.
		amt := int64(1000 + (i*7919)%50000)
		if _, err := led.Post(ctx, ledger.Tx{Key: fmt.Sprintf("seed:%d", i), Postings: []ledger.Posting{
			{Account: AcctRewards, Amount: -amt}, {Account: MinerAccount(crashMiner(i), "balance"), Amount: amt}}}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			if _, err := svc.PayoutRun(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPayoutCrash kills a process in the middle of payout runs (SIGKILL, several times
// at random moments), restarts it, and checks that no balance was debited or exported
// twice, that every batch is whole (ledger entry, record and file agree), and that the
// books balance.
func TestPayoutCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subprocesses")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(11, 12))
	for kill := 0; kill < 5; kill++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPayoutCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
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
		time.Sleep(time.Duration(200+r.IntN(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child ended by itself (%v):\n%s", err, stderr.String())
		}
	}

	ctx := context.Background()
	svc, led := openCrashService(t, dir)
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
		if b.Status != BatchExported {
			t.Errorf("batch %d is %s after recovery", b.N, b.Status)
		}
		e, err := led.Entry(ctx, batchKey(b.N, ""))
		if err != nil {
			t.Fatalf("batch %d has no ledger entry: %v", b.N, err)
		}
		debits := map[string]int64{}
		for _, p := range e.Postings {
			if strings.HasSuffix(p.Account, ":balance") {
				debits[p.Account] -= p.Amount
			}
		}
		var f ExportFile
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
			if debits[MinerAccount(it.Address, "balance")] != it.Amount {
				t.Errorf("batch %d: pays %s %d, debited %d", b.N, it.Address, it.Amount, debits[MinerAccount(it.Address, "balance")])
			}
			inBatches[it.Address] += it.Amount
		}
	}
	// Every satoshi credited is in exactly one place: a balance, or one batch.
	bals, _ := led.Balances(ctx, "miner:")
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
	rewards, _ := led.Balance(ctx, AcctRewards)
	if total != -rewards {
		t.Errorf("miners hold %d, %d was credited", total, -rewards)
	}
	t.Logf("%d batches across 5 kills, %d sat credited", len(batches), -rewards)
}

// walletRPC is a test double of Bitcoin Core's wallet RPC: it keeps the transactions
// sendmany made and lists them with their comments, as listtransactions does.
type walletRPC struct {
	mu    sync.Mutex
	sends []string // comments
	fail  bool     // lose the reply of the next sendmany (the node sent it; we crashed)
}

func (w *walletRPC) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     any               `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	w.mu.Lock()
	defer w.mu.Unlock()
	var result any
	switch req.Method {
	case "listtransactions":
		var txs []map[string]any
		for i, c := range w.sends {
			txs = append(txs, map[string]any{"category": "send", "comment": c, "txid": fmt.Sprintf("%064x", i+1)})
		}
		result = txs
	case "sendmany":
		var comment string
		json.Unmarshal(req.Params[3], &comment)
		w.sends = append(w.sends, comment)
		if w.fail {
			w.fail = false
			hj, _ := rw.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		result = fmt.Sprintf("%064x", len(w.sends))
	}
	json.NewEncoder(rw).Encode(map[string]any{"id": req.ID, "result": result, "error": nil})
}

// TestPayoutWalletRetryDoesNotPayTwice drives the sendmany path against a wallet RPC
// double whose first reply is lost after it sent: the retry finds the payment by its
// label and records it instead of sending again.
func TestPayoutWalletRetryDoesNotPayTwice(t *testing.T) {
	ctx := context.Background()
	w := &walletRPC{fail: true}
	srv := httptest.NewServer(w)
	defer srv.Close()
	c, err := node.NewClient(strings.Replace(srv.URL, "http://", "http://u:p@", 1), node.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	svc, err := Open(Config{Scheme: PPLNS, Network: &chaincfg.RegressionNetParams, PoolAddress: regtest.TestAddress(), Window: 1 << 40,
		PayoutThreshold: 1000, Wallet: CoreWallet{RPC: c}}, filepath.Join(dir, "payout.db"), led, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	a := regtest.TestAddress()
	led.Post(ctx, ledger.Tx{Key: "seed", Postings: []ledger.Posting{{Account: AcctRewards, Amount: -123456789}, {Account: MinerAccount(a, "balance"), Amount: 123456789}}})
	if _, err := svc.PayoutRun(ctx); err == nil {
		t.Fatal("lost sendmany reply: no error")
	}
	if got := balance(t, led, MinerAccount(a, "pending")); got != 123456789 {
		t.Fatalf("pending = %d after the failed send", got)
	}
	done, err := svc.PayoutRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.sends) != 1 {
		t.Fatalf("sendmany called %d times", len(w.sends))
	}
	if len(done) != 1 || done[0].Status != BatchSent || done[0].TxID != fmt.Sprintf("%064x", 1) {
		t.Fatalf("batches %+v", done)
	}
	if got := balance(t, led, MinerAccount(a, "paid")); got != 123456789 {
		t.Errorf("paid = %d", got)
	}
	if btc(123456789) != "1.23456789" || btc(5) != "0.00000005" {
		t.Errorf("btc formatting: %s %s", btc(123456789), btc(5))
	}
}
