package payout

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
)

// MinerBalances is where a miner's earnings stand, in satoshis.
type MinerBalances struct {
	Immature int64 `json:"immature_sat"` // credited, block not yet 100 deep (custody and direct)
	Mature   int64 `json:"mature_sat"`   // held by the pool, waiting for the payout threshold
	Pending  int64 `json:"pending_sat"`  // in a payout batch not yet sent
	Paid     int64 `json:"paid_sat"`     // paid by coinbase outputs and payout transactions
	Earned   int64 `json:"earned_sat"`   // all of the above
}

// CreditView is one ledger entry that moved a miner's money.
type CreditView struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"` // block, mature, orphaned, pps, payout, sent; market: hashrate-market earnings made payable (see package market)
	Block  string `json:"block,omitempty"`
	Window string `json:"window,omitempty"` // commitment of the PPLNS window behind the credit
	Amount int64  `json:"amount_sat"`       // net change of the miner's earnings (immature+mature+paid+pending)
	Direct bool   `json:"direct,omitempty"` // paid by an output of the block's coinbase
	Time   string `json:"time"`
	Memo   string `json:"memo"`
}

// MinerView is the payout side of GET /api/v1/miners/{address}.
type MinerView struct {
	Address  string        `json:"address"`
	Scheme   Scheme        `json:"scheme"`
	Balances MinerBalances `json:"balances"`
	Credits  []CreditView  `json:"credits"` // newest first
}

// maxViewEntries bounds the entries one view lists.
const maxViewEntries = 200

// Miner returns a miner's balances and recent credits.
func (s *Service) Miner(ctx context.Context, addr string) (MinerView, error) {
	v := MinerView{Address: addr, Scheme: s.cfg.Scheme, Credits: []CreditView{}}
	get := func(kind string) int64 {
		b, err := s.led.Balance(ctx, MinerAccount(addr, kind))
		if err != nil {
			return 0
		}
		return b
	}
	b := &v.Balances
	b.Immature = get("immature") + get("direct")
	b.Mature, b.Pending, b.Paid = get("balance"), get("pending"), get("paid")
	b.Earned = b.Immature + b.Mature + b.Pending + b.Paid
	seen := map[int64]bool{}
	var all []CreditView
	var ids []int64
	for _, kind := range []string{"immature", "direct", "balance", "paid", "pending"} {
		es, err := s.led.Entries(ctx, MinerAccount(addr, kind), maxViewEntries)
		if err != nil {
			return v, err
		}
		for _, e := range es {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			cv := CreditView{Key: e.Key, Time: e.Time.Format(time.RFC3339Nano), Memo: e.Memo}
			for _, p := range e.Postings {
				if strings.HasPrefix(p.Account, "miner:"+addr+":") {
					cv.Amount += p.Amount
					if strings.HasSuffix(p.Account, ":direct") && p.Amount > 0 {
						cv.Direct = true
					}
				}
			}
			cv.Kind, cv.Block = entryKind(e.Key)
			if i := strings.Index(e.Memo, " window "); i >= 0 {
				cv.Window = e.Memo[i+len(" window "):]
			}
			all = append(all, cv)
			ids = append(ids, e.ID)
		}
	}
	// Newest first across accounts: entry ids grow with every entry posted.
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return ids[order[a]] > ids[order[b]] })
	sorted := make([]CreditView, len(all))
	for i, j := range order {
		sorted[i] = all[j]
	}
	all = sorted
	if len(all) > maxViewEntries {
		all = all[:maxViewEntries]
	}
	v.Credits = append(v.Credits, all...)
	return v, nil
}

func entryKind(key string) (kind, block string) {
	parts := strings.Split(key, ":")
	switch {
	case parts[0] == "block" && len(parts) == 4:
		switch parts[3] {
		case "credit":
			return "block", parts[1]
		case "mature":
			return "mature", parts[1]
		case "reverse":
			return "orphaned", parts[1]
		}
	case parts[0] == "pps":
		return "pps", ""
	case parts[0] == "payout" && len(parts) == 2:
		return "payout", ""
	case parts[0] == "payout" && len(parts) == 3:
		return "sent", ""
	}
	return parts[0], ""
}

// PayoutView is one payment to an address in GET /api/v1/payouts.
type PayoutView struct {
	Batch   int64       `json:"batch"`
	Address string      `json:"address"`
	Amount  int64       `json:"amount_sat"`
	Status  BatchStatus `json:"status"`
	TxID    string      `json:"txid,omitempty"`
	Created string      `json:"created"`
}

// Payouts lists the payments of batches, to one address or (addr "") to all.
func (s *Service) Payouts(ctx context.Context, addr string) ([]PayoutView, error) {
	bs, err := s.db.batches(ctx, false)
	if err != nil {
		return nil, err
	}
	out := []PayoutView{}
	for i := len(bs) - 1; i >= 0; i-- {
		b := bs[i]
		for _, it := range b.Items {
			if addr != "" && it.Address != addr {
				continue
			}
			out = append(out, PayoutView{Batch: b.N, Address: it.Address, Amount: it.Amount, Status: b.Status, TxID: b.TxID,
				Created: time.Unix(b.Created, 0).UTC().Format(time.RFC3339)})
		}
	}
	return out, nil
}

// BlockCredit is what the ledger credited for one block, as published for verify.
type BlockCredit struct {
	Key     string   `json:"key"`
	Reward  int64    `json:"reward_sat"`
	Pool    int64    `json:"pool_sat"` // fee and dust
	Credits []Credit `json:"credits"`  // by address
}

// WindowView is GET /api/v1/blocks/{hash}/window: a PPLNS block's committed window,
// one page of its shares, and what the ledger credited.
type WindowView struct {
	Block      string        `json:"block"`
	Height     int64         `json:"height"`
	Reward     int64         `json:"reward_sat"`
	Status     string        `json:"status"`
	Scheme     Scheme        `json:"scheme"`
	Commitment Hash32        `json:"commitment"`
	Params     WindowParams  `json:"params"`
	Shares     []WindowShare `json:"shares"`           // Seq > after, oldest first
	Next       uint64        `json:"next,omitempty"`   // pass as after for the next page; 0 at the end
	Credit     *BlockCredit  `json:"credit,omitempty"` // nil until the block is credited
}

// MaxWindowPage bounds the shares of one window page.
const MaxWindowPage = 10_000

// BlockWindow returns a page of a credited PPLNS block's window.
func (s *Service) BlockWindow(ctx context.Context, hash chainhash.Hash, after uint64, limit int) (WindowView, error) {
	if s.cfg.Scheme != PPLNS {
		return WindowView{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "the pool pays %s: blocks have no share window", s.cfg.Scheme)
	}
	if limit <= 0 || limit > MaxWindowPage {
		limit = MaxWindowPage
	}
	b, err := s.store.BlockByHash(ctx, hash)
	if err != nil {
		return WindowView{}, err
	}
	v := WindowView{Block: hash.String(), Height: b.Height, Reward: b.Reward, Status: b.Status.String(), Scheme: s.cfg.Scheme, Shares: []WindowShare{}}
	c, err := s.db.blockWindow(ctx, Hash32(hash))
	switch {
	case hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND:
		// Credited without a window (no share had been seen when its coinbase was
		// built: the pool kept the reward), or not credited yet.
		k, _, err := s.epoch(ctx, hash)
		if err != nil {
			return v, err
		}
		if k == 0 {
			return v, hashgrid.Errorf(hashgrid.ENOTFOUND, "block %s is not credited yet", hash)
		}
		return v, s.addCredit(ctx, &v, hash, k)
	case err != nil:
		return v, err
	}
	p, err := s.db.window(ctx, c)
	if err != nil {
		return WindowView{}, err
	}
	v.Commitment, v.Params = c, p
	if err := s.checkRetained(ctx, p); err != nil {
		return v, err
	}
	if p.Count > 0 && after < p.End {
		from := max(after, p.Start-1)
		page, err := s.store.Shares(ctx, from, p.End, limit)
		if err != nil {
			return v, err
		}
		for i := range page {
			ws := shareOf(&page[i])
			if ws.Seq == p.Start {
				ws.Weight = p.First
			}
			v.Shares = append(v.Shares, ws)
		}
		if len(page) == limit && page[len(page)-1].Seq < p.End {
			v.Next = page[len(page)-1].Seq
		}
	}
	k, _, err := s.epoch(ctx, hash)
	if err != nil || k == 0 {
		return v, err
	}
	return v, s.addCredit(ctx, &v, hash, k)
}

// addCredit sets v.Credit from credit k of the block.
func (s *Service) addCredit(ctx context.Context, v *WindowView, hash chainhash.Hash, k int) error {
	{
		e, err := s.led.Entry(ctx, blockKey(hash, k, "credit"))
		if err != nil {
			return err
		}
		bc := &BlockCredit{Key: e.Key}
		for _, p := range e.Postings {
			switch {
			case p.Account == AcctRewards:
				bc.Reward = -p.Amount
			case p.Account == AcctFeeImmature:
				bc.Pool = p.Amount
			case strings.HasPrefix(p.Account, "miner:"):
				rest := strings.TrimPrefix(p.Account, "miner:")
				i := strings.LastIndexByte(rest, ':')
				if i < 0 {
					return fmt.Errorf("payout: bad account %q in %s", p.Account, e.Key)
				}
				bc.Credits = append(bc.Credits, Credit{Address: rest[:i], Amount: p.Amount, Direct: rest[i+1:] == "direct"})
			}
		}
		v.Credit = bc
	}
	return nil
}
