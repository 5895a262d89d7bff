package payout

import (
	"context"
	"encoding/json"
	"fmt"
)

// Caller is a JSON-RPC client (node.Client satisfies it).
type Caller interface {
	Call(ctx context.Context, method string, params []any, result any) error
}

// CoreWallet pays batches through Bitcoin Core's wallet RPC: sendmany with the batch's
// label as the comment, after listtransactions shows no transaction with that comment.
type CoreWallet struct {
	RPC Caller
	// Lookback is how many recent wallet transactions are searched for the label;
	// default 1000.
	Lookback int
}

type walletTx struct {
	Category string `json:"category"`
	Comment  string `json:"comment"`
	TxID     string `json:"txid"`
}

// Pay implements Wallet.
func (w CoreWallet) Pay(ctx context.Context, label string, items []BatchItem) (string, error) {
	n := w.Lookback
	if n <= 0 {
		n = 1000
	}
	var txs []walletTx
	if err := w.RPC.Call(ctx, "listtransactions", []any{"*", n, 0}, &txs); err != nil {
		return "", fmt.Errorf("wallet: listtransactions: %w", err)
	}
	for _, t := range txs {
		if t.Category == "send" && t.Comment == label && t.TxID != "" {
			return t.TxID, nil
		}
	}
	amounts := map[string]json.Number{}
	for _, it := range items {
		if it.Amount <= 0 {
			return "", fmt.Errorf("wallet: non-positive amount %d to %s", it.Amount, it.Address)
		}
		if _, dup := amounts[it.Address]; dup {
			return "", fmt.Errorf("wallet: %s twice in one batch", it.Address)
		}
		amounts[it.Address] = json.Number(btc(it.Amount))
	}
	var txid string
	if err := w.RPC.Call(ctx, "sendmany", []any{"", amounts, 1, label}, &txid); err != nil {
		return "", fmt.Errorf("wallet: sendmany: %w", err)
	}
	if len(txid) != 64 {
		return "", fmt.Errorf("wallet: sendmany returned %q, not a txid", txid)
	}
	return txid, nil
}

// btc formats satoshis as a decimal BTC amount without going through a float.
func btc(sat int64) string { return fmt.Sprintf("%d.%08d", sat/100_000_000, sat%100_000_000) }
