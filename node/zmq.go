package node

import (
	"context"
	"log"
	"log/slog"
	"strings"

	"github.com/go-zeromq/zmq4"
)

// zmqTopic is Bitcoin Core's zmqpubhashblock topic: frames "hashblock", the 32-byte
// block hash and a 4-byte little-endian sequence number.
const zmqTopic = "hashblock"

// subscribeHashBlock subscribes to Bitcoin Core's hashblock notifications at endpoint
// (tcp://HOST:PORT) and pokes wake on each one; the watcher then fetches a template.
// The message is only a hint, so its hash is checked for shape and not trusted further.
// A lost connection is redialled with backoff; polling covers the gap.
func (s *Set) subscribeHashBlock(ctx context.Context, endpoint string, wake chan<- struct{}) {
	log := s.log.With("zmq", endpoint)
	// zmq4 logs through a *log.Logger: route it into ours at debug level.
	zlog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	fails := 0
	for ctx.Err() == nil {
		n, err := s.receiveHashBlocks(ctx, endpoint, zlog, wake)
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			fails = 0
		}
		fails++
		log.Warn("zmq subscription lost", "err", err, "received", n)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(s.backoff(fails)):
		}
	}
}

// receiveHashBlocks runs one SUB connection until it fails and returns how many valid
// notifications it passed on.
func (s *Set) receiveHashBlocks(ctx context.Context, endpoint string, zlog *log.Logger, wake chan<- struct{}) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithLogger(zlog))
	defer sub.Close()
	if err := sub.Dial(endpoint); err != nil {
		return 0, err
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, zmqTopic); err != nil {
		return 0, err
	}
	n := 0
	for {
		msg, err := sub.Recv()
		if err != nil {
			return n, err
		}
		if len(msg.Frames) < 2 || string(msg.Frames[0]) != zmqTopic || len(msg.Frames[1]) != 32 {
			s.log.Warn("zmq: unexpected message", "frames", len(msg.Frames), "topic", strings.ToValidUTF8(string(clipBytes(msg.Frames, 0)), "?"))
			continue
		}
		n++
		select {
		case wake <- struct{}{}:
		default: // a fetch is already pending
		}
	}
}

func clipBytes(frames [][]byte, i int) []byte {
	if i >= len(frames) {
		return nil
	}
	if len(frames[i]) > 32 {
		return frames[i][:32]
	}
	return frames[i]
}
