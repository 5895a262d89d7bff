package natsstream

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Setup bounds and retries for JetStream's setup requests.
const (
	// SetupTimeout bounds one attempt to create or update a stream or bucket.
	SetupTimeout = 10 * time.Second
	// SetupAttempts is how many attempts Setup makes before it gives up.
	SetupAttempts = 6
)

// Setup runs f, a request that creates or updates a stream or a key-value bucket,
// until it succeeds, fails for a reason another attempt cannot change, or ctx ends.
// Processes that start together race to create the same stream, and a JetStream
// cluster may leave the losers' requests unanswered (seen with nats-server 2.9 and
// three replicas: every racing process timed out although the stream was created), so
// each attempt has its own deadline, and a timeout or a name already in use is tried
// again.
func Setup[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := range SetupAttempts {
		actx, cancel := context.WithTimeout(ctx, SetupTimeout)
		var v T
		v, err = f(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, err
		}
		if !retryable(err) {
			return zero, err
		}
		select {
		case <-ctx.Done():
			return zero, err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return zero, err
}

func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
