package payout

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/pool"
)

// reconcileLimit bounds how many recent blocks one pass looks at.
const reconcileLimit = 2000

// Block credits follow the block's status, each step an idempotent ledger entry:
//
//	block:HASH:K:credit   when accepted (K counts how often it was, a reorg can return it)
//	block:HASH:K:mature   when confirmed: immature → balance, direct → paid
//	block:HASH:K:reverse  when orphaned after credit K: PPLNS and SOLO credits undone;
//	                      under PPS/FPPS the pool's funds lose the reward (the pool
//	                      absorbs the loss; miners keep what their shares earned)
func blockKey(h chainhash.Hash, k int, step string) string {
	return fmt.Sprintf("block:%s:%d:%s", h, k, step)
}

// Reconcile brings the ledger in line with the status of every recent found block.
func (s *Service) Reconcile(ctx context.Context) error {
	blocks, err := s.store.Blocks(ctx, reconcileLimit)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range blocks {
		switch b.Status {
		case hashgrid.BlockAccepted, hashgrid.BlockConfirmed, hashgrid.BlockOrphaned:
		default:
			continue
		}
		if s.seen[b.Hash] == b.Status {
			continue
		}
		if err := s.reconcileBlock(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("block %s: %w", chainhash.Hash(b.Hash), err))
			continue
		}
		s.seen[b.Hash] = b.Status
	}
	return errors.Join(errs...)
}

func (s *Service) has(ctx context.Context, key string) (ledger.Entry, bool, error) {
	e, err := s.led.Entry(ctx, key)
	if hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND {
		return ledger.Entry{}, false, nil
	}
	return e, err == nil, err
}

// epoch returns the latest credit number of a block (0: never credited) and whether
// that credit stands (not reversed).
func (s *Service) epoch(ctx context.Context, h chainhash.Hash) (int, bool, error) {
	k := 0
	for {
		_, ok, err := s.has(ctx, blockKey(h, k+1, "credit"))
		if err != nil {
			return 0, false, err
		}
		if !ok {
			break
		}
		k++
	}
	if k == 0 {
		return 0, false, nil
	}
	_, rev, err := s.has(ctx, blockKey(h, k, "reverse"))
	return k, !rev, err
}

func (s *Service) reconcileBlock(ctx context.Context, b hashgrid.Block) error {
	h := chainhash.Hash(b.Hash)
	k, active, err := s.epoch(ctx, h)
	if err != nil {
		return err
	}
	switch b.Status {
	case hashgrid.BlockAccepted, hashgrid.BlockConfirmed:
		if !active {
			tx, err := s.creditTx(ctx, b)
			if err != nil {
				return err
			}
			k++
			tx.Key = blockKey(h, k, "credit")
			if _, err := s.led.Post(ctx, tx); err != nil {
				return err
			}
		}
		if b.Status == hashgrid.BlockConfirmed {
			return s.mature(ctx, h, k)
		}
	case hashgrid.BlockOrphaned:
		if active {
			return s.reverse(ctx, h, k)
		}
	}
	return nil
}

// creditTx returns the entry crediting a block under the scheme.
func (s *Service) creditTx(ctx context.Context, b hashgrid.Block) (ledger.Tx, error) {
	h := chainhash.Hash(b.Hash)
	memo := fmt.Sprintf("%s block %s height %d", s.cfg.Scheme, h, b.Height)
	if s.cfg.Scheme == PPS || s.cfg.Scheme == FPPS {
		return ledger.Tx{Memo: memo, Postings: []ledger.Posting{{Account: AcctRewards, Amount: -b.Reward}, {Account: AcctFunds, Amount: b.Reward}}}, nil
	}
	sp, c, err := s.BlockSplit(ctx, b)
	if err != nil {
		return ledger.Tx{}, err
	}
	if c != (Hash32{}) {
		memo += " window " + c.String()
	}
	return splitTx(memo, sp), nil
}

// splitTx books a split: the chain's reward against each miner's immature or direct
// credit and the pool's fee and dust.
func splitTx(memo string, sp Split) ledger.Tx {
	ps := []ledger.Posting{{Account: AcctRewards, Amount: -sp.Reward}}
	if p := sp.Pool(); p > 0 {
		ps = append(ps, ledger.Posting{Account: AcctFeeImmature, Amount: p})
	}
	for _, c := range sp.Credits {
		kind := "immature"
		if c.Direct {
			kind = "direct"
		}
		ps = append(ps, ledger.Posting{Account: MinerAccount(c.Address, kind), Amount: c.Amount})
	}
	return ledger.Tx{Memo: memo, Postings: ps}
}

// BlockSplit computes a block's split from the chain and the store: for PPLNS the
// window committed in its coinbase, recut from the shares in the store and checked
// against the commitment; for SOLO the finder's reward less the fee. The commitment is
// zero when the coinbase carries none (no share had been seen yet: the pool keeps it).
func (s *Service) BlockSplit(ctx context.Context, b hashgrid.Block) (Split, Hash32, error) {
	if s.cfg.Scheme == SOLO {
		fee := b.Reward * s.cfg.Split.FeeBps / MaxFeeBps
		sp := Split{Reward: b.Reward, Fee: fee}
		if b.Reward-fee > 0 {
			sp.Credits = []Credit{{Address: b.Address, Amount: b.Reward - fee, Direct: true}}
		}
		return sp, Hash32{}, nil
	}
	blk, err := s.chain.Block(ctx, chainhash.Hash(b.Hash))
	if err != nil {
		return Split{}, Hash32{}, fmt.Errorf("fetch block: %w", err)
	}
	if len(blk.Transactions) == 0 {
		return Split{}, Hash32{}, errors.New("block without coinbase")
	}
	cb := blk.Transactions[0]
	var scripts [][]byte
	var reward int64
	for _, o := range cb.TxOut {
		scripts = append(scripts, o.PkScript)
		reward += o.Value
	}
	c, ok := FindCommitment(scripts)
	if !ok {
		return Split{Reward: reward, Dust: reward}, Hash32{}, nil
	}
	w, err := s.windowOf(ctx, c)
	if err != nil {
		return Split{}, Hash32{}, err
	}
	sp, err := SplitReward(reward, w.Weights(), w.Params.SplitParams())
	if err != nil {
		return Split{}, Hash32{}, err
	}
	// The coinbase must pay what the split says it paid directly.
	for _, cr := range sp.Credits {
		if !cr.Direct {
			continue
		}
		want, err := pool.AddressScript(cr.Address, s.cfg.Network)
		if err != nil {
			return Split{}, Hash32{}, err
		}
		found := false
		for _, o := range cb.TxOut {
			if o.Value == cr.Amount && string(o.PkScript) == string(want) {
				found = true
				break
			}
		}
		if !found {
			return Split{}, Hash32{}, fmt.Errorf("coinbase lacks the direct output of %d sat to %s", cr.Amount, cr.Address)
		}
	}
	if err := s.db.putBlockWindow(ctx, Hash32(b.Hash), c); err != nil {
		return Split{}, Hash32{}, err
	}
	return sp, c, nil
}

// maxWindowRead bounds one store read of window shares.
const maxWindowRead = 100_000

// windowOf rebuilds the window behind a commitment from the store and checks it.
func (s *Service) windowOf(ctx context.Context, c Hash32) (Window, error) {
	p, err := s.db.window(ctx, c)
	if err != nil {
		return Window{}, err
	}
	if p.Count == 0 {
		return Window{Params: p}, nil
	}
	last, err := s.store.LastSeq(ctx)
	if err != nil {
		return Window{}, err
	}
	if last < p.End {
		return Window{}, fmt.Errorf("store holds shares up to %d, window ends at %d: retry later", last, p.End)
	}
	if err := s.checkRetained(ctx, p); err != nil {
		return Window{}, err
	}
	shares := make([]WindowShare, 0, p.Count)
	after := p.Start - 1
	for after < p.End {
		page, err := s.store.Shares(ctx, after, p.End, maxWindowRead)
		if err != nil {
			return Window{}, err
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			shares = append(shares, shareOf(&page[i]))
		}
		after = page[len(page)-1].Seq
	}
	w, err := RebuildWindow(shares, p)
	if err != nil {
		return Window{}, err
	}
	if got := w.Params.Commitment(); got != c {
		return Window{}, fmt.Errorf("shares in the store do not rebuild window %s (got %s, %d shares)", c, got, len(w.Shares))
	}
	return w, nil
}

// mature posts the maturity of credit k: custody credits become balances, direct
// credits are paid, the pool's fee becomes its own.
func (s *Service) mature(ctx context.Context, h chainhash.Hash, k int) error {
	key := blockKey(h, k, "mature")
	if _, ok, err := s.has(ctx, key); ok || err != nil {
		return err
	}
	credit, err := s.led.Entry(ctx, blockKey(h, k, "credit"))
	if err != nil {
		return err
	}
	var ps []ledger.Posting
	for _, p := range credit.Postings {
		var to string
		switch {
		case p.Account == AcctFeeImmature:
			to = AcctFee
		case strings.HasSuffix(p.Account, ":immature") && strings.HasPrefix(p.Account, "miner:"):
			to = strings.TrimSuffix(p.Account, ":immature") + ":balance"
		case strings.HasSuffix(p.Account, ":direct") && strings.HasPrefix(p.Account, "miner:"):
			to = strings.TrimSuffix(p.Account, ":direct") + ":paid"
		default:
			continue
		}
		ps = append(ps, ledger.Posting{Account: p.Account, Amount: -p.Amount}, ledger.Posting{Account: to, Amount: p.Amount})
	}
	if len(ps) == 0 {
		return nil
	}
	_, err = s.led.Post(ctx, ledger.Tx{Key: key, Memo: "matured " + credit.Memo, Postings: ps})
	return err
}

// reverse undoes credit k (and its maturity, after a reorg deeper than 100 blocks).
func (s *Service) reverse(ctx context.Context, h chainhash.Hash, k int) error {
	credit, err := s.led.Entry(ctx, blockKey(h, k, "credit"))
	if err != nil {
		return err
	}
	ps := negate(credit.Postings)
	if m, ok, err := s.has(ctx, blockKey(h, k, "mature")); err != nil {
		return err
	} else if ok {
		ps = append(ps, negate(m.Postings)...)
	}
	_, err = s.led.Post(ctx, ledger.Tx{Key: blockKey(h, k, "reverse"), Memo: "orphaned " + credit.Memo, Postings: ps})
	return err
}

func negate(ps []ledger.Posting) []ledger.Posting {
	out := make([]ledger.Posting, len(ps))
	for i, p := range ps {
		out[i] = ledger.Posting{Account: p.Account, Amount: -p.Amount}
	}
	return out
}
