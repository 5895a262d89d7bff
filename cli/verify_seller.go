package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
)

// verifySeller checks what a hashrate seller was paid and why, from three published
// sources that must agree: the market's seller view (what each worker earned), the
// pool's miner view and payout list (the one book the payout engine pays from, and
// the batches that paid), and, with a node, the chain (each payout transaction pays
// the address what the list says, and is confirmed).
func verifySeller(ctx context.Context, hc *http.Client, w io.Writer, poolBase, marketBase, addr string, params *chaincfg.Params, nodeURL string) error {
	var sv market.SellerView
	if err := getAPI(ctx, hc, marketBase+"/api/v1/sellers/"+url.PathEscape(addr), &sv); err != nil {
		return err
	}
	var mi api.MinerInfo
	if err := getAPI(ctx, hc, poolBase+"/api/v1/miners/"+url.PathEscape(addr), &mi); err != nil {
		return err
	}
	var ps []payout.PayoutView
	if err := getAPI(ctx, hc, poolBase+"/api/v1/payouts?address="+url.QueryEscape(addr), &ps); err != nil {
		return err
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// The market: the workers' earnings add up to the address's.
	var workers int64
	for _, wv := range sv.Workers {
		workers += wv.Earned
	}
	if workers != sv.Earned {
		bad("the market's workers earned %d sat in all, the address %d", workers, sv.Earned)
	}
	// The market's earnings are credits in the pool's book: its miner view lists
	// them (kind market) and shows the same balances the market reads.
	var credited int64
	for _, c := range mi.Credits {
		if c.Kind == "market" {
			credited += c.Amount
		}
	}
	if credited != sv.Earned {
		bad("the pool's book credited %d sat of market earnings, the market says %d were earned", credited, sv.Earned)
	}
	b := mi.Balances
	if b.Mature != sv.Payable || b.Pending != sv.Pending || b.Paid != sv.Paid {
		bad("balances differ: pool payable %d pending %d paid %d, market's view %d %d %d", b.Mature, b.Pending, b.Paid, sv.Payable, sv.Pending, sv.Paid)
	}
	if sv.Earned > b.Earned {
		bad("the market says %d sat were earned, the pool's book holds %d for the address in all", sv.Earned, b.Earned)
	}
	// The payouts: sent ones carry their transaction, the rest are pending.
	var sent, pending int64
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Address != addr {
			bad("payout of batch %d is to %s, not %s", p.Batch, p.Address, addr)
			continue
		}
		if p.Status == payout.BatchSent {
			if p.TxID == "" {
				bad("payout of batch %d is sent without a transaction", p.Batch)
			}
			sent += p.Amount
		} else {
			pending += p.Amount
		}
	}
	if pending != b.Pending {
		bad("payouts not yet sent add up to %d sat, the pending balance is %d", pending, b.Pending)
	}
	if sent > b.Paid {
		bad("payout transactions sent %d sat, the paid balance is %d", sent, b.Paid)
	}
	// The chain: each transaction pays the address exactly its payouts' amount.
	if nodeURL != "" {
		c, err := node.NewClient(nodeURL)
		if err != nil {
			return fmt.Errorf("--node: %w", err)
		}
		script, err := pool.AddressScript(addr, params)
		if err != nil {
			return err
		}
		want := map[string]int64{}
		for _, p := range ps {
			if p.Status == payout.BatchSent && p.TxID != "" {
				want[p.TxID] += p.Amount
			}
		}
		for txid, amount := range want {
			if seen[txid] {
				continue
			}
			seen[txid] = true
			got, conf, err := paidBy(ctx, c, txid, script)
			if err != nil {
				bad("transaction %s: %v", txid, err)
				continue
			}
			if got != amount || conf < 1 {
				bad("transaction %s pays %s %d sat with %d confirmations; the payout list says %d", txid, addr, got, conf, amount)
			}
		}
	}
	fmt.Fprintf(w, "seller %s: %d workers earned %d sat at the market; the pool's book holds %d payable, %d pending, %d paid (%d by %d payout(s) sent)\n",
		addr, len(sv.Workers), sv.Earned, b.Mature, b.Pending, b.Paid, sent, len(ps))
	if other := b.Earned - sv.Earned; other > 0 {
		fmt.Fprintf(w, "the address also earned %d sat by mining at the pool itself\n", other)
	}
	if nodeURL == "" {
		fmt.Fprintln(w, "note: payout transactions not checked against the chain (pass --node)")
	} else {
		fmt.Fprintf(w, "chain: %d payout transaction(s) checked\n", len(seen))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(w, "MISMATCH:", p)
		}
		return fmt.Errorf("verify: %d problem(s) in what %s was paid", len(problems), addr)
	}
	fmt.Fprintln(w, "ok: what the seller earned, what the book holds and what the chain paid agree")
	return nil
}

// paidBy returns what transaction txid pays to script, and its confirmations (the
// node needs its transaction index, or the wallet's, to find it).
func paidBy(ctx context.Context, c *node.Client, txid string, script []byte) (int64, int64, error) {
	var r struct {
		Hex           string `json:"hex"`
		Confirmations int64  `json:"confirmations"`
	}
	if err := c.Call(ctx, "getrawtransaction", []any{txid, 1}, &r); err != nil {
		return 0, 0, err
	}
	raw, err := hex.DecodeString(r.Hex)
	if err != nil {
		return 0, 0, err
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		return 0, 0, err
	}
	if tx.TxID() != txid {
		return 0, 0, fmt.Errorf("the node answered another transaction, %s", tx.TxID())
	}
	var got int64
	for _, out := range tx.TxOut {
		if bytes.Equal(out.PkScript, script) {
			got += out.Value
		}
	}
	return got, r.Confirmations, nil
}
