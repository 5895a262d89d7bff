package payout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/pow"
)

// Ledger accounts. A miner's money moves immature → balance → pending → paid; coinbase
// outputs paid directly go direct → paid at maturity. The pool's side: rewards is the
// contra account of every block credited (it goes negative by what the chain paid),
// capital that of the declared PPS funding, funds what PPS/FPPS may still credit.
const (
	AcctRewards     = "pool:rewards"
	AcctFee         = "pool:fee"
	AcctFeeImmature = "pool:fee:immature"
	AcctFunds       = "pool:funds"
	AcctCapital     = "pool:capital"
)

// MinerAccount returns a miner's account of a kind: immature, direct, balance, pending
// or paid.
func MinerAccount(addr, kind string) string { return "miner:" + addr + ":" + kind }

// ppsFrac is the fixed point of PPS accruals: values are counted in 2^-32 satoshi.
const ppsFrac = 32

// shareRate turns share difficulty into accrued value at one rate.
type shareRate struct {
	target  *big.Int // network target
	capProd *big.Int // diff1·2^32: w·target above it is a share worth more than a block
	num     *big.Int // reward·(10000 − fee)
	den     *big.Int // 10000·diff1
}

// newShareRate returns the rate of a share: the expected reward of a block
// (subsidy, plus average fees under FPPS, less the pool fee) times its chance of being
// one, w/difficulty = w·target/(diff1·2^32) with w in Diff units. A share is never
// worth more than a block: the chance is capped at 1 (on regtest every share is a
// block).
func newShareRate(r Rate, scheme Scheme, feeBps int64) (shareRate, error) {
	t, err := pow.CompactTarget(r.Bits)
	if err != nil {
		return shareRate{}, err
	}
	tb := t.Big()
	if tb.Sign() == 0 {
		return shareRate{}, errors.New("payout: zero target")
	}
	reward := r.Subsidy
	if scheme == FPPS {
		reward += r.Fees
	}
	num := new(big.Int).Mul(big.NewInt(reward), big.NewInt(MaxFeeBps-feeBps))
	den := new(big.Int).Mul(big.NewInt(MaxFeeBps), pow.Diff1)
	return shareRate{target: tb, capProd: new(big.Int).Lsh(pow.Diff1, 32), num: num, den: den}, nil
}

// value returns the share's accrual, floor(num·min(w·target, diff1·2^32)/den) in
// 2^-32 satoshi, split into whole satoshis and the fraction.
func (sr shareRate) value(d hashgrid.Diff, tmp *big.Int) (sat int64, frac uint64) {
	tmp.SetUint64(uint64(d))
	tmp.Mul(tmp, sr.target)
	if tmp.Cmp(sr.capProd) > 0 {
		tmp.Set(sr.capProd)
	}
	tmp.Mul(tmp, sr.num)
	tmp.Quo(tmp, sr.den)
	frac = tmp.Uint64() & (1<<ppsFrac - 1) // low word of a non-negative value
	tmp.Rsh(tmp, ppsFrac)
	return tmp.Int64(), frac
}

// ppsCredits computes the ledger entries for a run of shares (ordered by Seq). carries holds each
// miner's sub-satoshi accrual before the run; the carries after it are returned (only
// those that changed), carries itself is not modified. The result depends only on the
// records, the recorded rates and the carries, so a run replayed after a crash posts
// the same entries under the same keys.
func (s *Service) ppsCredits(ctx context.Context, shares []hashgrid.Share, carries map[string]uint64, rates map[int64]shareRate) ([]ledger.Tx, map[string]uint64, error) {
	changed := map[string]uint64{}
	var txs []ledger.Tx
	var tmp big.Int
	for i := range shares {
		sh := &shares[i]
		if sh.Result != hashgrid.ShareAccepted {
			continue
		}
		sr, ok := rates[sh.Height]
		if !ok {
			rate, found, err := s.db.rate(ctx, sh.Height, s.cfg.FeeWindow)
			if err != nil {
				return nil, nil, err
			}
			if !found {
				return nil, nil, fmt.Errorf("payout: no PPS rate for height %d yet", sh.Height)
			}
			if sr, err = newShareRate(rate, s.cfg.Scheme, s.cfg.Split.FeeBps); err != nil {
				return nil, nil, err
			}
			rates[sh.Height] = sr
		}
		sat, frac := sr.value(sh.Diff, &tmp)
		c, ok := changed[sh.Address]
		if !ok {
			c = carries[sh.Address]
		}
		c += frac
		sat += int64(c >> ppsFrac)
		changed[sh.Address] = c & (1<<ppsFrac - 1)
		if sat <= 0 {
			continue
		}
		txs = append(txs, ledger.Tx{
			Key:         "pps:" + strconv.FormatUint(sh.Seq, 10),
			Memo:        fmt.Sprintf("%s share %d height %d", s.cfg.Scheme, sh.Seq, sh.Height),
			Postings:    []ledger.Posting{{Account: AcctFunds, Amount: -sat}, {Account: MinerAccount(sh.Address, "balance"), Amount: sat}},
			NonNegative: []string{AcctFunds},
		})
	}
	return txs, changed, nil
}

// ensureFunding posts the change of declared funding since the last start.
func (s *Service) ensureFunding(ctx context.Context) error {
	have, err := s.led.Balance(ctx, AcctCapital)
	if err != nil {
		return err
	}
	delta := s.cfg.Funding + have // capital is negative by what was declared
	if delta == 0 {
		return nil
	}
	_, err = s.led.Post(ctx, ledger.Tx{
		Key:         fmt.Sprintf("funding:%d->%d", -have, s.cfg.Funding),
		Memo:        "declared PPS funding",
		Postings:    []ledger.Posting{{Account: AcctCapital, Amount: -delta}, {Account: AcctFunds, Amount: delta}},
		NonNegative: []string{AcctFunds},
	})
	return err
}

// ppsBatch is how many shares one PPS crediting step reads and posts.
const ppsBatch = 1000

// runPPS credits every accepted share in the store, in order, once. It polls the
// store (which keeps every share) rather than the share stream (pruned behind it), so
// a consumer that waits for funds loses nothing.
func (s *Service) runPPS(ctx context.Context) error {
	if err := s.ensureFunding(ctx); err != nil {
		return fmt.Errorf("payout: funding: %w", err)
	}
	cursor, started, carries, err := s.db.ppsState(ctx)
	if err != nil {
		return err
	}
	if !started {
		// First start under PPS: shares from before (another scheme, or none) are not
		// PPS's to pay.
		if cursor, err = s.store.LastSeq(ctx); err != nil {
			return err
		}
		if err := s.db.savePPS(ctx, cursor, nil); err != nil {
			return err
		}
	}
	rates := map[int64]shareRate{}
	t := time.NewTicker(s.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		sh, err := s.store.Shares(ctx, cursor, math.MaxInt64, ppsBatch)
		if err == nil && len(sh) > 0 {
			err = s.creditPPS(ctx, sh, carries, rates)
			if err == nil {
				cursor = sh[len(sh)-1].Seq
				if len(sh) == ppsBatch {
					continue
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("payout: PPS credit", "after", cursor, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Service) creditPPS(ctx context.Context, shares []hashgrid.Share, carries map[string]uint64, rates map[int64]shareRate) error {
	if len(rates) > 1000 {
		clear(rates)
	}
	txs, changed, err := s.ppsCredits(ctx, shares, carries, rates)
	if err != nil {
		return err
	}
	for len(txs) > 0 {
		n := min(len(txs), ledger.MaxBatch)
		if _, err := s.led.PostAll(ctx, txs[:n]); err != nil {
			if errors.Is(err, ledger.ErrInsufficient) {
				return fmt.Errorf("payout: PPS funds exhausted, crediting waits for blocks or funding: %w", err)
			}
			return err
		}
		txs = txs[n:]
	}
	if err := s.db.savePPS(ctx, shares[len(shares)-1].Seq, changed); err != nil {
		return err
	}
	for a, c := range changed {
		carries[a] = c
	}
	return nil
}
