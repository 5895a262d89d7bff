package natsstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/stream"
)

// DefaultSaveInterval is how often, at most, a Shipper saves its position while it
// ships. A crash re-sends at most what was shipped since; the Shipper reads back what
// the stream holds of it and does not store any of that twice.
const DefaultSaveInterval = time.Second

// Shipper copies a front-end's local log (AckLocal) into the JetStream stream, its
// records grouped into messages of consecutive local sequences with ids naming them (see
// the package doc), and saves its position in a file. A front-end id is used either by a
// Shipper or by a Stream, never both.
type Shipper struct {
	opts    Options
	src     stream.Stream
	js      jetstream.JetStream
	st      jetstream.Stream
	subj    string
	posPath string

	// SaveInterval bounds how often the position is saved; DefaultSaveInterval if 0.
	SaveInterval time.Duration
	// Batch is how many records are published before their acknowledgements are
	// awaited; stream.DefaultTailBatch if 0 (bounded by MaxPending).
	Batch int

	pos     position
	shipped atomic.Uint64 // pos.local, for Shipped from other goroutines
	saved   time.Time
	unsure  bool              // a publish since the last confirmed batch may have been stored
	stored  map[uint64]uint64 // local sequences after pos.local the stream already holds, to their stream sequences
}

// position is how far a Shipper has shipped: every local record up to local is in the
// stream, the last of them at stream sequence seq or before.
type position struct {
	local uint64
	seq   uint64
}

// pruner is what a local log offers to drop shipped records (stream.Log.Prune).
type pruner interface {
	Prune(before uint64) (int, error)
}

// NewShipper returns a Shipper of src, whose record sequences are the local sequences,
// into the stream named in opts (created if missing), keeping its position in posPath.
// Run ships. The local log must still hold the records after the saved position (the
// Shipper prunes it only up to there); if the position file is lost, Run starts after
// local sequence 0 and fails with stream.ErrPruned once the log has been pruned.
func NewShipper(ctx context.Context, nc *nats.Conn, src stream.Stream, posPath string, opts Options) (*Shipper, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(opts.MaxPending+2),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("natsstream: shipper: jetstream: %w", err)
	}
	st, err := Setup(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, opts.config())
	})
	if err != nil {
		return nil, fmt.Errorf("natsstream: shipper: stream %s: %w", opts.Stream, err)
	}
	sh := &Shipper{opts: opts, src: src, js: js, st: st, subj: opts.subject(), posPath: posPath, unsure: true}
	if sh.pos, err = readPosition(posPath, opts.FrontEnd); err != nil {
		return nil, err
	}
	sh.shipped.Store(sh.pos.local)
	if err := sh.checkOwnLog(ctx); err != nil {
		return nil, err
	}
	return sh, nil
}

// checkOwnLog refuses a local log that is not the one that shipped this front-end's
// records: a front-end started under an old number with a new data directory. Its log
// starts again at 1, and read-back would take its new records for ones already shipped
// and drop them, although their miners were told they were accepted.
func (sh *Shipper) checkOwnLog(ctx context.Context) error {
	lg, ok := sh.src.(interface{ LastSeq() uint64 })
	if !ok {
		return nil
	}
	last, err := lastLocalSeq(ctx, sh.st, sh.subj, sh.opts.FrontEnd)
	if err != nil {
		return fmt.Errorf("natsstream: shipper: %w", err)
	}
	if local := lg.LastSeq(); last > local {
		return fmt.Errorf("natsstream: shipper: the stream holds front-end %q's records up to local sequence %d, but this local log ends at %d: "+
			"its data directory is not the one that shipped them; start this front-end under a new number", sh.opts.FrontEnd, last, local)
	}
	return nil
}

// Shipped returns the highest local sequence known to be in the stream.
func (sh *Shipper) Shipped() uint64 { return sh.shipped.Load() }

// Run ships records until ctx ends, waiting for new ones when it has caught up. A batch
// that fails is offered again after a backoff (stream.Tailer); before it is published
// again, the Shipper reads back which of its records the stream already holds, so no
// record is stored twice however long the pause. Run returns ctx's error, or the local
// log's.
func (sh *Shipper) Run(ctx context.Context) error {
	batch := sh.Batch
	if batch <= 0 {
		batch = stream.DefaultTailBatch
	}
	batch = min(batch, sh.opts.MaxPending)
	t := stream.Tailer{Batch: batch, Logger: sh.opts.Logger}
	err := t.Run(ctx, sh.src, sh.pos.local, func(recs []stream.Record) error { return sh.ship(ctx, recs) })
	if serr := sh.save(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// ship publishes recs, all with local sequences above pos.local, and waits for their
// acknowledgements.
func (sh *Shipper) ship(ctx context.Context, recs []stream.Record) error {
	if sh.unsure {
		if err := sh.readBack(ctx); err != nil {
			return err
		}
		sh.unsure = false
	}
	type sent struct {
		msg *nats.Msg
		id  string
		paf jetstream.PubAckFuture
	}
	// Messages are cut from the start of each run of records the stream does not hold,
	// the same way every time: a batch offered again after a failure is cut into the
	// same messages, less the ones stored meanwhile, each whole.
	var out []sent
	var data []byte
	for i := 0; i < len(recs); {
		if _, ok := sh.stored[recs[i].Seq]; ok {
			i++
			continue
		}
		j, size := i+1, batchSize(recs[i].Data)
		for j < len(recs) && j-i < sh.opts.MaxBatch && recs[j].Seq == recs[j-1].Seq+1 &&
			size+batchSize(recs[j].Data) <= sh.opts.MaxBatchBytes {
			if _, ok := sh.stored[recs[j].Seq]; ok {
				break
			}
			size += batchSize(recs[j].Data)
			j++
		}
		data = recs[i].Data
		if j-i > 1 {
			data = make([]byte, 0, size)
			for _, r := range recs[i:j] {
				data = appendBatch(data, r.Data)
			}
		}
		s := sent{msg: &nats.Msg{Subject: sh.subj, Data: data, Header: nats.Header{}}, id: MsgID(sh.opts.FrontEnd, recs[i].Seq, recs[j-1].Seq)}
		i = j
		sh.unsure = true
		paf, err := sh.js.PublishMsgAsync(s.msg, sh.pubOpts(s.id)...)
		if err != nil {
			return fmt.Errorf("natsstream: ship %s: %w", s.id, err)
		}
		s.paf = paf
		out = append(out, s)
	}
	last := sh.pos.seq
	for _, s := range out {
		var ack *jetstream.PubAck
		var err error
		select {
		case ack = <-s.paf.Ok():
		case err = <-s.paf.Err():
		case <-ctx.Done():
			return ctx.Err()
		}
		for i := 0; ack == nil && i < sh.opts.Resends; i++ {
			pctx, cancel := context.WithTimeout(ctx, sh.opts.AckTimeout)
			ack, err = sh.js.PublishMsg(pctx, s.msg, sh.pubOpts(s.id)...)
			cancel()
		}
		if ack == nil {
			return fmt.Errorf("natsstream: ship %s: %w", s.id, err)
		}
		last = max(last, ack.Sequence)
	}
	sh.unsure = false
	for local, seq := range sh.stored {
		if local <= recs[len(recs)-1].Seq {
			delete(sh.stored, local)
			continue
		}
		// A record still ahead that the stream holds from before must stay after the
		// saved stream sequence, or a read back after a crash would miss it.
		last = min(last, seq-1)
	}
	sh.pos = position{local: recs[len(recs)-1].Seq, seq: last}
	sh.shipped.Store(sh.pos.local)
	if time.Since(sh.saved) >= sh.saveInterval() {
		return sh.save()
	}
	return nil
}

func (sh *Shipper) pubOpts(id string) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithMsgID(id), jetstream.WithExpectStream(sh.opts.Stream)}
}

func (sh *Shipper) saveInterval() time.Duration {
	if sh.SaveInterval > 0 {
		return sh.SaveInterval
	}
	return DefaultSaveInterval
}

// readBack collects the local sequences above pos.local that the stream already holds
// of this front-end, reading its records after stream sequence pos.seq (headers only).
// They were published after the last saved or confirmed position, so they are few: at
// most a save interval's worth and a batch.
func (sh *Shipper) readBack(ctx context.Context) error {
	sh.stored = make(map[uint64]uint64)
	lastMsg, err := sh.st.GetLastMsgForSubject(ctx, sh.subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("natsstream: shipper: last record: %w", err)
	}
	if lastMsg.Sequence <= sh.pos.seq {
		return nil
	}
	cons, err := sh.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{sh.subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    sh.pos.seq + 1,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("natsstream: shipper: read back: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("natsstream: shipper: read back: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("natsstream: shipper: read back: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("natsstream: shipper: read back: %w", err)
		}
		fe, first, last, err := ParseMsgID(msg.Headers().Get(jetstream.MsgIDHeader))
		if err != nil || fe != sh.opts.FrontEnd {
			return fmt.Errorf("natsstream: shipper: message %d on %s: not this front-end's (%v)", md.Sequence.Stream, sh.subj, err)
		}
		for local := max(first, sh.pos.local+1); local <= last; local++ {
			sh.stored[local] = md.Sequence.Stream
		}
		if md.Sequence.Stream >= lastMsg.Sequence {
			sh.opts.Logger.Info("natsstream: shipper read back its unconfirmed records",
				"after_local", sh.pos.local, "after_seq", sh.pos.seq, "stored", len(sh.stored))
			return nil
		}
	}
}

// save writes the position to posPath (through a temporary file, synced, then renamed)
// and prunes the local log up to it when it can.
func (sh *Shipper) save() error {
	pos := sh.pos
	dir := filepath.Dir(sh.posPath)
	tmp, err := os.CreateTemp(dir, ".shipper-*")
	if err != nil {
		return fmt.Errorf("natsstream: shipper: save position: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprintf(tmp, "%s %s %d %d\n", positionMagic, sh.opts.FrontEnd, pos.local, pos.seq)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), sh.posPath)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("natsstream: shipper: save position: %w", err)
	}
	sh.saved = time.Now()
	if p, ok := sh.src.(pruner); ok && pos.local > 0 {
		if _, err := p.Prune(pos.local + 1); err != nil {
			return fmt.Errorf("natsstream: shipper: prune local log: %w", err)
		}
	}
	return nil
}

const positionMagic = "hashgrid-shipper-v1"

func readPosition(path, frontEnd string) (position, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("natsstream: shipper: position: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || f[0] != positionMagic {
		return position{}, fmt.Errorf("natsstream: shipper: position %s: malformed", path)
	}
	if f[1] != frontEnd {
		return position{}, fmt.Errorf("natsstream: shipper: position %s belongs to front-end %q, not %q", path, f[1], frontEnd)
	}
	local, err1 := strconv.ParseUint(f[2], 10, 64)
	seq, err2 := strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return position{}, fmt.Errorf("natsstream: shipper: position %s: malformed", path)
	}
	return position{local: local, seq: seq}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
