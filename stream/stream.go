// Package stream is the durable share stream: an append-only log of opaque records,
// each numbered by a sequence that starts at 1 (or Options.FirstSeq) and never repeats.
//
// The pool appends every share it answers and replies to the miner only once the append
// is durable, then a consumer (Tail) copies the stream into the store in batches. Log is
// the implementation for one machine: segment files in a directory, each record framed
// with its length, sequence and a CRC32C, written by one goroutine that commits
// concurrent appends with a single write and fsync (group commit). The Stream interface
// is what a NATS JetStream implementation will satisfy across machines.
//
// The package does not interpret records, replicate them, or decide when they have been
// consumed: the consumer calls Prune once the store holds them.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Record is one record of a stream with its sequence number.
type Record struct {
	Seq  uint64
	Data []byte
}

// Stream is a durable, ordered log of records.
type Stream interface {
	// Append adds rec and returns its sequence once it is durable. An error means the
	// record may not have been stored; the caller must not report it as recorded.
	Append(ctx context.Context, rec []byte) (seq uint64, err error)
	// AppendAsync adds rec, which it takes over, and calls done exactly once with the
	// record's sequence once it is durable, or with an error. done is called in commit
	// order from one goroutine of the stream's, and must neither block nor append.
	AppendAsync(rec []byte, done func(seq uint64, err error))
	// Read returns up to max records with Seq > after, oldest first; none if there are
	// no newer records yet.
	Read(ctx context.Context, after uint64, max int) ([]Record, error)
	// Wait blocks until a record with Seq > after exists, ctx ends or the stream closes.
	Wait(ctx context.Context, after uint64) error
	// Close stops the stream; appends under way are completed or failed first.
	Close() error
}

// Errors returned by Log. Other errors (I/O) are wrapped with a "stream:" prefix.
var (
	ErrClosed   = errors.New("stream: closed")
	ErrTooLarge = errors.New("stream: record too large")
	ErrPruned   = errors.New("stream: records pruned")
)

// Tail defaults. A batch is what the consumer takes at once when it is behind: each
// batch is one store transaction (one commit and fsync), so a busy pool's shares cost
// the store little more than their bytes; an idle one's come one or a few at a time.
// A consumer whose store fails retries after MinBackoff, doubling up to MaxBackoff, so
// a briefly unavailable database is retried quickly and a long outage is not hammered.
const (
	DefaultTailBatch      = 4096
	DefaultTailMinBackoff = 50 * time.Millisecond
	DefaultTailMaxBackoff = 5 * time.Second
)

// Tailer copies a stream to a consumer in batches. The zero value uses the defaults.
type Tailer struct {
	Batch      int           // records per call of fn; DefaultTailBatch if 0
	MinBackoff time.Duration // first retry delay after fn fails
	MaxBackoff time.Duration // retry delay cap
	Logger     *slog.Logger  // failed batches are logged here; silent if nil
	// ReadAhead reads the next batch while fn works on the last (one batch ahead, on
	// a goroutine of Run's), so that a consumer whose reads and stores each take time
	// (JetStream and PostgreSQL) overlaps them. The stream's Read must return records
	// whose memory the next Read does not reuse, as natsstream's does.
	ReadAhead bool
}

// permanentError marks an error that Tail must return rather than retry.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Tail stops and returns it instead of retrying the batch,
// for errors that waiting cannot cure (a record the consumer cannot decode).
func Permanent(err error) error { return permanentError{err} }

// Tail calls fn with batches of at most batch records of s with Seq > after, in order,
// until ctx ends. See Tailer.Run.
func Tail(ctx context.Context, s Stream, after uint64, batch int, fn func([]Record) error) error {
	return Tailer{Batch: batch}.Run(ctx, s, after, fn)
}

// Run calls fn with consecutive batches of records with Seq > after, waiting for new
// records when it has caught up. A batch that fn fails is offered again, unchanged, after
// a backoff, so no record is ever skipped; fn must therefore be idempotent for a batch it
// partly applied. Run returns ctx's error when ctx ends, the error of a failed Read or
// Wait (ErrClosed when the stream closes), or an error fn marked with Permanent.
func (t Tailer) Run(ctx context.Context, s Stream, after uint64, fn func([]Record) error) error {
	if t.Batch <= 0 {
		t.Batch = DefaultTailBatch
	}
	if t.MinBackoff <= 0 {
		t.MinBackoff = DefaultTailMinBackoff
	}
	if t.MaxBackoff < t.MinBackoff {
		t.MaxBackoff = max(DefaultTailMaxBackoff, t.MinBackoff)
	}
	log := t.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	next := func() ([]Record, error) { return t.read(ctx, s, &after) }
	if t.ReadAhead {
		rctx, cancel := context.WithCancel(ctx)
		type batch struct {
			recs []Record
			err  error
		}
		ch := make(chan batch, 1)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		from := after
		wg.Go(func() {
			for {
				recs, err := t.read(rctx, s, &from)
				select {
				case ch <- batch{recs, err}:
				case <-rctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		})
		next = func() ([]Record, error) {
			select {
			case b := <-ch:
				return b.recs, b.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	for {
		recs, err := next()
		if err != nil {
			return err
		}
		backoff := t.MinBackoff
		for attempt := 1; ; attempt++ {
			err := fn(recs)
			if err == nil {
				break
			}
			var perm permanentError
			if errors.As(err, &perm) {
				return fmt.Errorf("stream: tail: records %d..%d: %w", recs[0].Seq, recs[len(recs)-1].Seq, perm.err)
			}
			log.Warn("stream consumer failed; retrying", "first", recs[0].Seq, "last", recs[len(recs)-1].Seq,
				"attempt", attempt, "backoff", backoff, "err", err)
			timer := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
			backoff = min(2*backoff, t.MaxBackoff)
		}
	}
}

// read returns the next non-empty batch after *after, waiting for one when the stream
// has none, and moves *after past it.
func (t Tailer) read(ctx context.Context, s Stream, after *uint64) ([]Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		recs, err := s.Read(ctx, *after, t.Batch)
		if err != nil {
			return nil, fmt.Errorf("stream: tail: read after %d: %w", *after, err)
		}
		if len(recs) == 0 {
			if err := s.Wait(ctx, *after); err != nil {
				return nil, err
			}
			continue
		}
		*after = recs[len(recs)-1].Seq
		return recs, nil
	}
}
