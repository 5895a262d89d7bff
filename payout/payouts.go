package payout

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// Wallet sends payout batches.
type Wallet interface {
	// Pay sends items in one transaction labelled label and returns its txid. If a
	// transaction with that label was already sent (a retry after a crash), it returns
	// that one's txid and sends nothing.
	Pay(ctx context.Context, label string, items []BatchItem) (txid string, err error)
}

// MaxBatchItems bounds the payments of one batch (one transaction).
const MaxBatchItems = 500

func batchKey(n int64, step string) string {
	if step == "" {
		return "payout:" + strconv.FormatInt(n, 10)
	}
	return "payout:" + strconv.FormatInt(n, 10) + ":" + step
}

// label marks a batch's wallet transaction; the pool id keeps two pools sharing a
// wallet apart.
func (s *Service) label(n int64) string { return fmt.Sprintf("hashgrid payout %s/%d", s.poolID, n) }

// PayoutRun pays every mature balance at or above the threshold. A batch is recorded
// before anything moves; balances are debited to pending by one ledger entry keyed by
// the batch; then the wallet pays it (having checked that it has not already) or the
// batch is exported. A run that dies at any point is finished by the next run, and no
// balance is debited or sent twice. It returns the batches it finished.
func (s *Service) PayoutRun(ctx context.Context) ([]Batch, error) {
	var done []Batch
	open, err := s.db.batches(ctx, true)
	if err != nil {
		return nil, err
	}
	for _, b := range open {
		if err := s.finishBatch(ctx, &b); err != nil {
			return done, err
		}
		done = append(done, b)
	}
	bals, err := s.led.Balances(ctx, "miner:")
	if err != nil {
		return done, err
	}
	var items []BatchItem
	for acct, v := range bals {
		addr, ok := strings.CutSuffix(strings.TrimPrefix(acct, "miner:"), ":balance")
		if !ok || v <= 0 || v < s.cfg.PayoutThreshold {
			continue
		}
		items = append(items, BatchItem{Address: addr, Amount: v})
	}
	if len(items) == 0 {
		return done, nil
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Address < items[j].Address })
	for len(items) > 0 {
		k := min(len(items), MaxBatchItems)
		n, err := s.db.nextBatch(ctx)
		if err != nil {
			return done, err
		}
		b := Batch{N: n, Created: s.cfg.Now().Unix(), Items: items[:k], Status: BatchNew}
		if err := s.db.putBatch(ctx, b); err != nil {
			return done, err
		}
		if err := s.finishBatch(ctx, &b); err != nil {
			return done, err
		}
		done = append(done, b)
		items = items[k:]
	}
	return done, nil
}

func (s *Service) finishBatch(ctx context.Context, b *Batch) error {
	var ps []ledger.Posting
	var nonneg []string
	for _, it := range b.Items {
		ps = append(ps, ledger.Posting{Account: MinerAccount(it.Address, "balance"), Amount: -it.Amount},
			ledger.Posting{Account: MinerAccount(it.Address, "pending"), Amount: it.Amount})
		nonneg = append(nonneg, MinerAccount(it.Address, "balance"))
	}
	if _, err := s.led.Post(ctx, ledger.Tx{Key: batchKey(b.N, ""), Memo: fmt.Sprintf("payout batch %d", b.N), Postings: ps, NonNegative: nonneg}); err != nil {
		return fmt.Errorf("payout: batch %d: %w", b.N, err)
	}
	if s.cfg.Wallet == nil {
		if err := s.export(b); err != nil {
			return err
		}
		b.Status = BatchExported
		return s.db.setBatch(ctx, b.N, BatchExported, "")
	}
	txid, err := s.cfg.Wallet.Pay(ctx, s.label(b.N), b.Items)
	if err != nil {
		return fmt.Errorf("payout: batch %d: %w", b.N, err)
	}
	if err := s.markPaid(ctx, b, txid); err != nil {
		return err
	}
	b.Status, b.TxID = BatchSent, txid
	return nil
}

func (s *Service) markPaid(ctx context.Context, b *Batch, txid string) error {
	var ps []ledger.Posting
	for _, it := range b.Items {
		ps = append(ps, ledger.Posting{Account: MinerAccount(it.Address, "pending"), Amount: -it.Amount},
			ledger.Posting{Account: MinerAccount(it.Address, "paid"), Amount: it.Amount})
	}
	if _, err := s.led.Post(ctx, ledger.Tx{Key: batchKey(b.N, "sent"), Memo: "txid " + txid, Postings: ps}); err != nil {
		return fmt.Errorf("payout: batch %d sent: %w", b.N, err)
	}
	return s.db.setBatch(ctx, b.N, BatchSent, txid)
}

// MarkPaid records that the operator broadcast exported batch n as transaction txid.
func (s *Service) MarkPaid(ctx context.Context, n int64, txid string) error {
	if len(txid) != 64 {
		return hashgrid.Errorf(hashgrid.EINVALID, "payout: txid must be 64 hex digits")
	}
	bs, err := s.db.batches(ctx, false)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.N != n {
			continue
		}
		if b.Status == BatchSent {
			if b.TxID == txid {
				return nil
			}
			return hashgrid.Errorf(hashgrid.ECONFLICT, "payout: batch %d already paid by %s", n, b.TxID)
		}
		if b.Status != BatchExported {
			return hashgrid.Errorf(hashgrid.ECONFLICT, "payout: batch %d is %s, not exported", n, b.Status)
		}
		return s.markPaid(ctx, &b, txid)
	}
	return hashgrid.Errorf(hashgrid.ENOTFOUND, "payout: no batch %d", n)
}

// ExportFile is the file a batch is exported to, for the operator to sign: the pool's
// label, the network and the payments in satoshis.
type ExportFile struct {
	Label   string      `json:"label"`
	Network string      `json:"network"`
	Batch   int64       `json:"batch"`
	Items   []BatchItem `json:"items"`
	Total   int64       `json:"total_sat"`
}

// BatchPath returns where batch n is exported.
func (s *Service) BatchPath(n int64) string {
	return filepath.Join(s.cfg.ExportDir, fmt.Sprintf("payout-%06d.json", n))
}

// export writes the batch file atomically; writing it again writes the same bytes.
func (s *Service) export(b *Batch) error {
	f := ExportFile{Label: s.label(b.N), Network: s.cfg.Network.Name, Batch: b.N, Items: b.Items}
	for _, it := range b.Items {
		f.Total += it.Amount
	}
	data, _ := json.MarshalIndent(f, "", "  ")
	if err := os.MkdirAll(s.cfg.ExportDir, 0o750); err != nil {
		return fmt.Errorf("payout: export: %w", err)
	}
	path := s.BatchPath(b.N)
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("payout: export: %w", err)
	}
	if _, err := fh.Write(append(data, '\n')); err != nil {
		fh.Close()
		return fmt.Errorf("payout: export: %w", err)
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return fmt.Errorf("payout: export: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("payout: export: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("payout: export: %w", err)
	}
	if d, err := os.Open(s.cfg.ExportDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Batches returns every payout batch, oldest first.
func (s *Service) Batches(ctx context.Context) ([]Batch, error) { return s.db.batches(ctx, false) }
