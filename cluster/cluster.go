// Package cluster is what the processes of a pool spread over several machines tell
// each other, over NATS, besides the shares themselves (which natsstream carries):
//
//   - found blocks: each Stratum front-end publishes its block records (BlockSink) into
//     a JetStream stream of their own; the leading accounting process copies them into
//     the database (CopyBlocks), with the number of the share that found each block as
//     the database knows it;
//   - front-end status: each front-end puts its pool.Stats into a JetStream key-value
//     bucket every StatsInterval (PublishStats); the accounting processes sum the live
//     ones for the API and dashboard (Stats);
//   - the coinbase layout: under PPLNS the accounting leader puts the current window's
//     layout into the same bucket (PublishLayout) and the front-ends build their
//     coinbases from it (Layouts).
//
// Roles and how to deploy them: docs/guides/cluster.md.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/natsstream"
)

// Names in NATS.
const (
	BlockStream = "HASHGRID_BLOCKS"
	BlockPrefix = "hashgrid.blocks"
	Bucket      = "HASHGRID_CLUSTER"
)

// StatsInterval is how often a front-end publishes its status; a status older than
// StatsStale is a front-end that is gone.
const (
	StatsInterval = 2 * time.Second
	StatsStale    = 15 * time.Second
)

// MaxValueSize bounds one value in the bucket: a PPLNS layout of many thousands of
// miners fits.
const MaxValueSize = 8 << 20

// bucket opens (creating if needed) the cluster's key-value bucket.
func bucket(ctx context.Context, nc *nats.Conn, replicas int) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	if replicas == 0 {
		replicas = 1
	}
	kv, err := natsstream.Setup(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       Bucket,
			Description:  "hashgrid: front-end status and the coinbase layout",
			History:      1,
			Storage:      jetstream.FileStorage,
			Replicas:     replicas,
			MaxValueSize: MaxValueSize,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// put writes v as JSON under key.
func put(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxValueSize {
		return fmt.Errorf("cluster: %s is %d bytes, above %d", key, len(b), MaxValueSize)
	}
	_, err = kv.Put(ctx, key, b)
	return err
}

// get reads key's JSON into v; ok is false when the key does not exist.
func get(ctx context.Context, kv jetstream.KeyValue, key string, v any) (ok bool, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(e.Value(), v)
}
