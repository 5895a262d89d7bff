package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
)

// TestMarketSellersPaidOnChain: a pool on btcd regtest runs PPLNS with a wallet; the
// market shares its book (--pool-data). A seller mines through the market into the
// same pool as a buyer's destination; settlements make the seller's earnings payable
// at its address, and the pool's own payout loop pays them on chain by a wallet RPC
// whose transactions are real regtest transactions. The first sendmany's reply is lost
// after it was broadcast: the next run finds it by its label and pays nothing twice.
// Every payout's transaction is confirmed and pays the seller exactly what the pool's
// payout view says; the seller's earnings are explained to the satoshi; the ledger
// checks; and a payout run started again afterwards pays nothing.
func TestMarketSellersPaidOnChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	testMarketSellersPaidOnChain(t, "")
}

// TestMarketSellersPaidOnChainPostgres is TestMarketSellersPaidOnChain with the
// pool's books in PostgreSQL, which the market shares with --postgres.
func TestMarketSellersPaidOnChainPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd and needs PostgreSQL")
	}
	testMarketSellersPaidOnChain(t, pgtest.FreshDatabase(t))
}

func testMarketSellersPaidOnChain(t *testing.T, pg string) {
	btcd := regtest.StartT(t, func(o *regtest.Options) {
		o.MiningAddr = regtest.TestAddressP2PKH() // the wallet's coins
		o.ExtraArgs = append(o.ExtraArgs, "--txindex")
	})
	w := newChainWallet(t, btcd, 30)
	wsrv := httptest.NewServer(w)
	defer wsrv.Close()
	w.loseNext = true

	poolData := t.TempDir()
	const threshold = 50_000
	poolCfg := PoolConfig{Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: poolData, Tag: "/market-pay/",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, ShareInterval: time.Second, LogLevel: "warn",
		// The blocks the buyer's shares find pay the buyer by their coinbase (every credit is
		// above the coinbase threshold): what the wallet pays is the sellers' money.
		PayoutScheme: "pplns", CoinbaseThreshold: 1, PayoutThreshold: threshold, PayoutInterval: time.Second, Wallet: "http://wallet:secret@" + wsrv.Listener.Addr().String(),
		Postgres: pg}
	p, stopPool := startPool(t, poolCfg)
	poolStopped := false
	defer func() {
		if !poolStopped {
			stopPool()
		}
	}()
	mcfg := MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), PoolData: poolData, Network: "regtest",
		SellerShareInterval: time.Second, LogLevel: "info", AdminToken: "pay-admin", AllowPrivateDestinations: true}
	if pg != "" {
		mcfg.PoolData, mcfg.Postgres = "", pg
	}
	mr, stopMarket := startMarket(t, mcfg)
	marketStopped := false
	defer func() {
		if !marketStopped {
			stopMarket()
		}
	}()
	c := marketClient{t: t, base: "http://" + mr.API}
	poolAPI := "http://" + p.API

	var buyer market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &buyer)
	c.must("POST", "/api/v1/admin/deposits", "pay-admin", market.DepositRequest{Account: buyer.ID, Amount: 2_000_000_000, Reference: "pay"}, nil)
	var o market.OrderView
	c.must("POST", "/api/v1/orders", buyer.APIKey, market.OrderRequest{PoolURL: "stratum+tcp://" + p.Stratum, PoolUser: regtest.TestAddress() + ".bought",
		PoolPassword: "d=0.0005", Price: 100_000_000_000_000_000, Budget: 1_000_000_000}, &o) // a share earns about 2,400 sat

	seller := e2eAddress(t, 7) // mines nowhere else: everything it is paid comes from the market
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, name := range []string{"rig1", "rig2"} {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + mr.Stratum, User: seller + "." + name, VersionRoll: i == 0, MaxRetryWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(ctx) })
	}
	payouts := func() []payout.PayoutView {
		var ps []payout.PayoutView
		getJSON(t, poolAPI+"/api/v1/payouts?address="+url.QueryEscape(seller), &ps)
		return ps
	}
	waitFor(t, 120*time.Second, "two payouts to the seller sent", func() bool {
		n := 0
		for _, pv := range payouts() {
			if pv.Status == payout.BatchSent {
				n++
			}
		}
		return n >= 2
	})
	if w.lost != 1 {
		t.Fatalf("%d sendmany replies lost, want 1", w.lost)
	}

	// The order ends: the last earnings settle, and the payout loop pays what is above
	// the threshold; less than the threshold stays payable.
	c.must("POST", "/api/v1/orders/"+o.ID+"/cancel", buyer.APIKey, nil, nil)
	waitFor(t, 20*time.Second, "the order refunded", func() bool { return c.order(buyer.APIKey, o.ID).Remaining == 0 })
	cancel()
	wg.Wait()
	var sv market.SellerView
	waitFor(t, 20*time.Second, "every payable balance above the threshold paid", func() bool {
		c.must("GET", "/api/v1/sellers/"+seller, "", nil, &sv)
		return sv.Pending == 0 && sv.Payable < threshold && sv.Paid > 0
	})
	if len(sv.Workers) != 2 || sv.Workers[0].Earned == 0 || sv.Workers[1].Earned == 0 || sv.Workers[0].Earned+sv.Workers[1].Earned != sv.Earned {
		t.Errorf("seller view's workers %+v, earned %d", sv.Workers, sv.Earned)
	}
	if sv.Earned != sv.Payable+sv.Pending+sv.Paid {
		t.Errorf("seller earned %d; payable %d + pending %d + paid %d", sv.Earned, sv.Payable, sv.Pending, sv.Paid)
	}
	// What the buyer paid is the seller's earnings, the market's fee and the variance
	// the market carried, to the satoshi.
	lctx := context.Background()
	fees, _ := mr.Ledger.Balance(lctx, "market:fees")
	variance, _ := mr.Ledger.Balance(lctx, "market:variance")
	if spent := c.order(buyer.APIKey, o.ID).Spent; spent == 0 || sv.Earned+fees+variance != spent {
		t.Errorf("buyer charged %d; seller earned %d + fees %d + variance %d", spent, sv.Earned, fees, variance)
	}
	// The pool's own miner view explains the same money: the market's credits and the
	// payout batches that sent it.
	var mi api.MinerInfo
	getJSON(t, poolAPI+"/api/v1/miners/"+url.PathEscape(seller), &mi)
	var credited int64
	for _, cv := range mi.Credits {
		if cv.Kind == "market" {
			credited += cv.Amount
		}
	}
	if mi.Balances.Paid != sv.Paid || mi.Balances.Mature != sv.Payable || mi.Balances.Earned != sv.Earned || credited != sv.Earned {
		t.Errorf("pool's miner view %+v (market credits %d), market's seller view %+v", mi.Balances, credited, sv)
	}

	// On chain: every payout to the seller is one confirmed transaction the wallet
	// broadcast once, paying exactly what the payout view says.
	if _, err := btcd.Client().Generate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	ps := payouts()
	sellerScript, _ := pool.AddressScript(seller, &chaincfg.RegressionNetParams)
	var onChain int64
	seen := map[string]bool{}
	for _, pv := range ps {
		if pv.Status != payout.BatchSent || seen[pv.TxID] {
			t.Errorf("payout %+v: not sent, or its transaction paid twice", pv)
			continue
		}
		seen[pv.TxID] = true
		tx, conf := chainTx(t, btcd, pv.TxID)
		var got int64
		for _, out := range tx.TxOut {
			if bytes.Equal(out.PkScript, sellerScript) {
				got += out.Value
			}
		}
		if got != pv.Amount || conf < 1 {
			t.Errorf("batch %d: transaction %s pays the seller %d sat with %d confirmations, the payout view says %d", pv.Batch, pv.TxID, got, conf, pv.Amount)
		}
		onChain += got
	}
	if onChain != sv.Paid {
		t.Errorf("the chain paid the seller %d sat, the ledger says %d", onChain, sv.Paid)
	}
	// hashgrid verify --seller checks the same from the published views and the chain;
	// a pool that lists a payout it did not make is caught.
	var vout bytes.Buffer
	verifyArgs := func(api string) []string {
		return []string{"--seller", seller, "--api", api, "--market", "http://" + mr.API, "--node", btcd.RPCURL()}
	}
	if err := runVerify(context.Background(), verifyArgs(poolAPI), Env{Stdout: &vout, Stderr: io.Discard}); err != nil || !strings.Contains(vout.String(), "ok:") {
		t.Errorf("verify --seller: %v\n%s", err, vout.String())
	}
	t.Logf("verify --seller:\n%s", vout.String())
	liar := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(poolAPI + r.URL.RequestURI())
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if r.URL.Path == "/api/v1/payouts" {
			var ps []payout.PayoutView
			if json.Unmarshal(body, &ps) == nil && len(ps) > 0 {
				ps[0].Amount++ // one satoshi more than the transaction paid
				body, _ = json.Marshal(ps)
			}
		}
		rw.WriteHeader(resp.StatusCode)
		rw.Write(body)
	}))
	defer liar.Close()
	vout.Reset()
	if err := runVerify(context.Background(), verifyArgs(liar.URL), Env{Stdout: &vout, Stderr: io.Discard}); err == nil || !strings.Contains(vout.String(), "MISMATCH") {
		t.Errorf("verify --seller against a payout list one satoshi off: %v\n%s", err, vout.String())
	}
	w.mu.Lock()
	broadcast := len(w.sent)
	w.mu.Unlock()
	var batches []payout.PayoutView
	getJSON(t, poolAPI+"/api/v1/payouts", &batches)
	nb := map[int64]bool{}
	for _, b := range batches {
		nb[b.Batch] = true
	}
	if broadcast != len(nb) {
		t.Errorf("the wallet broadcast %d transactions for %d payout batches", broadcast, len(nb))
	}
	t.Logf("seller earned %d sat over %d workers: %d paid in %d transactions, %d payable below the threshold", sv.Earned, len(sv.Workers), sv.Paid, len(ps), sv.Payable)
	if err := mr.Ledger.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopMarket()
	marketStopped = true
	stopPool()
	poolStopped = true

	// A payout run started again over the same book and state, opened as the pool
	// opens them, pays nothing more.
	led, err := openLedger(context.Background(), poolCfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	pc, err := poolCfg.payoutConfig(&chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := node.NewClient(poolCfg.Wallet)
	if err != nil {
		t.Fatal(err)
	}
	pc.Wallet = payout.CoreWallet{RPC: wc}
	st, err := openPayoutState(poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := payout.OpenWith(pc, st, led, nil, nil)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	defer svc.Close()
	for range 2 {
		done, err := svc.PayoutRun(context.Background())
		if err != nil || len(done) != 0 {
			t.Errorf("payout run again: %d batches, %v", len(done), err)
		}
	}
	w.mu.Lock()
	if len(w.sent) != broadcast {
		t.Errorf("the wallet broadcast %d transactions after the runs again, %d before", len(w.sent), broadcast)
	}
	w.mu.Unlock()
	if paid, _ := led.Balance(context.Background(), payout.MinerAccount(seller, "paid")); paid != sv.Paid {
		t.Errorf("paid %d after the runs again, %d before", paid, sv.Paid)
	}
	if err := led.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// chainTx returns a transaction from the node (which runs with --txindex) and its
// confirmations.
func chainTx(t *testing.T, n *regtest.Node, txid string) (*wire.MsgTx, int64) {
	t.Helper()
	var r struct {
		Hex           string `json:"hex"`
		Confirmations int64  `json:"confirmations"`
	}
	if err := n.Client().Call(context.Background(), "getrawtransaction", []any{txid, 1}, &r); err != nil {
		t.Fatalf("getrawtransaction %s: %v", txid, err)
	}
	raw, err := hex.DecodeString(r.Hex)
	if err != nil {
		t.Fatal(err)
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return &tx, r.Confirmations
}

// chainWallet answers the two wallet RPC calls payout.CoreWallet makes (listtransactions
// and sendmany) with real regtest transactions: it spends mature coinbases of blocks
// btcd mined to TestAddressP2PKH, signs with the test key and broadcasts through btcd.
// It keeps no wallet of its own beyond the coins it was given and what it sent.
type chainWallet struct {
	t    *testing.T
	node *regtest.Node

	mu       sync.Mutex
	coins    []walletCoin
	sent     []walletSent
	loseNext bool // broadcast the next sendmany, then drop the connection instead of replying
	lost     int
}

type walletCoin struct {
	op    wire.OutPoint
	value int64
}

type walletSent struct{ comment, txid string }

// newChainWallet mines 100+n blocks to the test key and keeps the first n coinbases,
// which are then mature.
func newChainWallet(t *testing.T, n *regtest.Node, coins int) *chainWallet {
	t.Helper()
	hs, err := n.Client().Generate(context.Background(), 100+coins)
	if err != nil {
		t.Fatal(err)
	}
	w := &chainWallet{t: t, node: n}
	for _, h := range hs[:coins] {
		cb := getBlock(t, n, h).Transactions[0]
		w.coins = append(w.coins, walletCoin{op: wire.OutPoint{Hash: cb.TxHash(), Index: 0}, value: cb.TxOut[0].Value})
	}
	return w
}

func (w *chainWallet) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     any               `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var result any
	var rpcErr error
	switch req.Method {
	case "listtransactions":
		txs := []map[string]any{}
		for _, s := range w.sent {
			txs = append(txs, map[string]any{"category": "send", "comment": s.comment, "txid": s.txid})
		}
		result = txs
	case "sendmany":
		var amounts map[string]json.Number
		var comment string
		if len(req.Params) < 4 || json.Unmarshal(req.Params[1], &amounts) != nil || json.Unmarshal(req.Params[3], &comment) != nil {
			rpcErr = fmt.Errorf("bad sendmany params")
			break
		}
		txid, err := w.send(r.Context(), amounts)
		if err != nil {
			rpcErr = err
			break
		}
		w.sent = append(w.sent, walletSent{comment, txid})
		if w.loseNext {
			w.loseNext = false
			w.lost++
			c, _, _ := rw.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		result = txid
	default:
		rpcErr = fmt.Errorf("method %s not served", req.Method)
	}
	reply := map[string]any{"id": req.ID, "result": result, "error": nil}
	if rpcErr != nil {
		reply["result"], reply["error"] = nil, map[string]any{"code": -1, "message": rpcErr.Error()}
	}
	json.NewEncoder(rw).Encode(reply)
}

// send builds, signs and broadcasts a transaction paying amounts (BTC, as sendmany
// takes them), with a fixed fee and the change back to the test key.
func (w *chainWallet) send(ctx context.Context, amounts map[string]json.Number) (string, error) {
	const fee = 20_000
	params := &chaincfg.RegressionNetParams
	own, _ := pool.AddressScript(regtest.TestAddressP2PKH(), params)
	tx := wire.NewMsgTx(2)
	var total int64
	for addr, amt := range amounts {
		sat, err := satoshis(string(amt))
		if err != nil {
			return "", err
		}
		script, err := pool.AddressScript(addr, params)
		if err != nil {
			return "", err
		}
		tx.AddTxOut(wire.NewTxOut(sat, script))
		total += sat
	}
	var in int64
	for in < total+fee {
		if len(w.coins) == 0 {
			return "", fmt.Errorf("insufficient funds")
		}
		c := w.coins[0]
		w.coins = w.coins[1:]
		tx.AddTxIn(wire.NewTxIn(&c.op, nil, nil))
		in += c.value
	}
	tx.AddTxOut(wire.NewTxOut(in-total-fee, own))
	for i := range tx.TxIn {
		sig, err := txscript.SignatureScript(tx, i, own, txscript.SigHashAll, regtest.TestKey(), true)
		if err != nil {
			return "", err
		}
		tx.TxIn[i].SignatureScript = sig
	}
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		return "", err
	}
	var txid string
	if err := w.node.Client().Call(ctx, "sendrawtransaction", []any{hex.EncodeToString(buf.Bytes())}, &txid); err != nil {
		return "", err
	}
	return txid, nil
}

// satoshis parses a decimal BTC amount of at most eight decimals exactly.
func satoshis(btc string) (int64, error) {
	whole, frac, _ := strings.Cut(btc, ".")
	if len(frac) > 8 {
		return 0, fmt.Errorf("amount %q has more than 8 decimals", btc)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: %v", btc, err)
	}
	f, err := strconv.ParseInt((frac + "00000000")[:8], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: %v", btc, err)
	}
	return w*100_000_000 + f, nil
}
