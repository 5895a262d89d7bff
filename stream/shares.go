package stream

import (
	"context"
	"fmt"

	"github.com/hashgrid/hashgrid"
)

// AppendShare encodes sh, appends it to s and sets sh.Seq to the sequence it got. The
// encoded record carries Seq 0: the stream's sequence is the share's number.
func AppendShare(ctx context.Context, s Stream, sh *hashgrid.Share) error {
	rec := *sh
	rec.Seq = 0
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	seq, err := s.Append(ctx, b)
	if err != nil {
		return err
	}
	sh.Seq = seq
	return nil
}

// ShareSink records shares in a stream: it is what the pool makes shares durable with.
// One made by NewShareSink samples rejected shares; a literal ShareSink{S: s} writes
// every share.
type ShareSink struct {
	S       Stream
	rejects *rejectSampler // nil: every rejected share is written
}

// Record encodes sh and appends it to the stream, calling done with its sequence once
// it is durable, or with an error (then the share must not be reported as recorded).
// done is called from the stream's acknowledging goroutine: it must neither block nor
// append. A rejected share the sink holds instead of writing (counted in a later
// record's Repeats) is answered at once, with sequence 0.
func (k ShareSink) Record(sh *hashgrid.Share, done func(seq uint64, err error)) {
	if sh.Result != hashgrid.ShareAccepted && k.rejects != nil && !k.rejects.record(sh) {
		done(0, nil)
		return
	}
	rec := *sh
	rec.Seq = 0
	b, err := rec.MarshalBinary()
	if err != nil {
		done(0, fmt.Errorf("stream: %w", err))
		return
	}
	k.S.AppendAsync(b, done)
}

// StoreShares returns a Tail consumer that decodes each record as a share numbered by
// its sequence and adds the batch to store. Store errors are returned for Tail to retry
// (AddShares is idempotent by Seq, so a partly applied batch is safe to offer again);
// a record that does not decode, or that the store refuses as EINVALID, stops Tail,
// since no retry can fix it.
func StoreShares(ctx context.Context, store hashgrid.ShareStore) func([]Record) error {
	var shares []hashgrid.Share
	return func(recs []Record) error {
		shares = shares[:0]
		for _, r := range recs {
			var sh hashgrid.Share
			if err := sh.UnmarshalBinary(r.Data); err != nil {
				return Permanent(fmt.Errorf("record %d: %w", r.Seq, err))
			}
			sh.Seq = r.Seq
			shares = append(shares, sh)
		}
		err := store.AddShares(ctx, shares)
		if err != nil && hashgrid.ErrorCode(err) == hashgrid.EINVALID {
			return Permanent(err)
		}
		return err
	}
}
