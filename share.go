package hashgrid

import (
	"context"
	"time"
)

// ShareResult is the outcome of validating one mining.submit.
type ShareResult uint8

const (
	ShareAccepted      ShareResult = iota // valid at the assigned difficulty
	ShareStale                            // job unknown or superseded (Stratum 21)
	ShareDuplicate                        // same job, extranonce, ntime, nonce, version (22)
	ShareLowDiff                          // hash above the assigned target (23)
	ShareUnauthorized                     // worker not authorized (24)
	ShareNotSubscribed                    // no mining.subscribe yet (25)
	ShareInvalid                          // malformed or out-of-range fields (20)
)

var shareResultNames = [...]string{"accepted", "stale", "duplicate", "lowdiff", "unauthorized", "notsubscribed", "invalid"}

func (r ShareResult) String() string {
	if int(r) < len(shareResultNames) {
		return shareResultNames[r]
	}
	return "unknown"
}

// Share is one validated submission. Rejected shares are recorded too, so that reject
// rates and abuse can be seen; only accepted shares carry weight.
type Share struct {
	Seq       uint64      // position in the share stream; assigned when appended
	Time      time.Time   // when the pool received it
	Address   string      // payout address (the part of the username before the dot)
	Worker    string      // worker name (after the dot; may be empty)
	JobID     string      // Stratum job id
	Height    int64       // height of the block the job builds
	Diff      Diff        // difficulty assigned for this job: the share's weight
	Actual    Diff        // difficulty the hash actually met (saturating)
	Hash      [32]byte    // block header hash, internal byte order
	Result    ShareResult // accepted or why not
	Block     bool        // the hash met the network target
	UserAgent string      // client's mining.subscribe agent
	Remote    string      // client address (ip:port)
	// Repeats is, for a rejected share, how many more rejections of the same worker
	// and Result this record stands for: the pool keeps a bounded sample of rejected
	// shares and folds the others into a count on the last one of their interval.
	// Zero for an accepted share and for a rejected one recorded alone.
	Repeats uint64
	// Header is the 80-byte block header an accepted share hashed to Hash, kept for a
	// sample of accepted shares the pool chooses by their hash (pool.Sampled), so that
	// anyone can hash it again; nil for every other share. A pointer keeps Share
	// comparable and the unsampled shares as small as before.
	Header *[80]byte
}

// ShareHeaderSize is the size of Share.Header: a block header.
const ShareHeaderSize = 80

// BlockStatus follows a found block from submission to maturity.
type BlockStatus uint8

const (
	BlockSubmitted BlockStatus = iota // sent to the node, no answer yet
	BlockAccepted                     // node accepted it; on the best chain, immature
	BlockRejected                     // node rejected it
	BlockOrphaned                     // was accepted, later left the best chain
	BlockConfirmed                    // 100 confirmations: coinbase mature
)

var blockStatusNames = [...]string{"submitted", "accepted", "rejected", "orphaned", "confirmed"}

func (s BlockStatus) String() string {
	if int(s) < len(blockStatusNames) {
		return blockStatusNames[s]
	}
	return "unknown"
}

// CoinbaseMaturity is the number of confirmations before a coinbase can be spent.
const CoinbaseMaturity = 100

// Block is a block candidate the pool found and submitted.
type Block struct {
	Hash          [32]byte // internal byte order
	Height        int64
	PrevHash      [32]byte
	Time          time.Time // when found
	Address       string    // finder's payout address
	Worker        string
	Reward        int64 // coinbase value in satoshis (subsidy + fees)
	Fees          int64 // total fees in satoshis
	NetworkDiff   float64
	Status        BlockStatus
	Reason        string // node's rejection reason, if any
	Confirmations int64
	ShareSeq      uint64 // Seq of the share that found it
}

// Worker summarises one address.worker as the pool has seen it.
type Worker struct {
	Address   string
	Name      string
	Accepted  uint64
	Rejected  uint64
	Work      Work // sum of accepted share difficulty
	LastShare time.Time
}

// ShareStore is where shares, blocks and worker summaries are kept. Implementations
// must make AddShares idempotent by Share.Seq, so that replaying the stream after a
// crash never counts a share twice.
type ShareStore interface {
	// AddShares records a batch of shares (accepted and rejected) and updates worker
	// summaries, all in one transaction. Shares whose Seq is already stored are skipped.
	AddShares(ctx context.Context, shares []Share) error
	// LastSeq returns the highest Seq stored, 0 if none.
	LastSeq(ctx context.Context) (uint64, error)
	// Shares returns accepted shares with Seq in (after, upto], oldest first, at most limit.
	Shares(ctx context.Context, after, upto uint64, limit int) ([]Share, error)
	// SharesFor returns the most recent shares of one address (all results), newest first.
	SharesFor(ctx context.Context, address string, limit int) ([]Share, error)

	// PutBlock inserts or updates a block by hash.
	PutBlock(ctx context.Context, b Block) error
	// Blocks returns found blocks, newest first.
	Blocks(ctx context.Context, limit int) ([]Block, error)
	// BlockByHash returns one block or an error wrapping ErrNotFound.
	BlockByHash(ctx context.Context, hash [32]byte) (Block, error)

	// Workers returns the summaries of one address's workers (all if address is "").
	Workers(ctx context.Context, address string) ([]Worker, error)
	// WorkBetween returns per-worker summaries (accepted and rejected counts, accepted
	// work, last share) of shares received in [from, to). Windows on whole minutes
	// (see RecentWindow) are the cheap ones: stores keep per-minute summaries.
	WorkBetween(ctx context.Context, from, to time.Time) ([]Worker, error)
	// Totals returns pool-wide accepted and rejected counts and accepted work.
	Totals(ctx context.Context) (accepted, rejected uint64, work Work, err error)

	Close() error
}

// RecentWindow returns a window of about d that ends now, for hashrates and reject
// rates, laid on whole minutes so that a store answers it from per-minute summaries
// however busy the pool is: from the minute boundary d before the current minute's
// start to the end of the current minute (whose shares after now do not exist yet).
// span is the time the window has covered so far, between d and d plus a minute: the
// divisor of a rate. d is rounded up to a whole minute, at least one.
func RecentWindow(now time.Time, d time.Duration) (from, to time.Time, span time.Duration) {
	d = max(time.Minute, (d+time.Minute-1)/time.Minute*time.Minute)
	cur := now.Truncate(time.Minute)
	from, to = cur.Add(-d), cur.Add(time.Minute)
	return from, to, now.Sub(from)
}
