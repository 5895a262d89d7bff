package market

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// destClient is an upstream's connection to a destination pool: a stratum.Client for
// a Stratum V1 destination, a v2Dest for a Stratum V2 one.
type destClient interface {
	Updates() <-chan stratum.Work
	Submit(ctx context.Context, s *stratum.Submit) error
	Done() <-chan struct{}
	Err() error
	ReconnectRequest() *stratum.Reconnect
	Close() error
}

// destHostPort returns the HOST:PORT of a destination URL: stratum+tcp://HOST:PORT, or
// stratum2+tcp://HOST:PORT/AUTHORITY_KEY for a Stratum V2 pool.
func destHostPort(raw string) (string, error) {
	if strings.HasPrefix(raw, noise.URLScheme+"://") {
		hp, _, err := noise.ParseURL(raw)
		return hp, err
	}
	return stratum.HostPort(raw)
}

// v2Dest is a Stratum V2 destination seen as a V1 one, so that an upstream and the
// market's jobs work unchanged: the market opens one extended channel, whose jobs
// become stratum.Work (the coinbase prefix as coinb1, the channel's extranonce prefix
// as extranonce1, its extranonce size as the extranonce2 size, the suffix as coinb2,
// the merkle path as the branch, the channel's target as the difficulty), and a
// forwarded share becomes SubmitSharesExtended. The destination's authority key, from
// the order's URL, must have signed its certificate. A V2 pool sends no
// client.reconnect: ReconnectRequest is always nil.
type v2Dest struct {
	c       *client.Client
	updates chan stratum.Work

	mu       sync.Mutex
	versions map[uint32]uint32 // job id → the job's version, for shares' rolled bits
	order    []uint32
	prev     chainhash.Hash
}

// maxV2Jobs bounds the jobs whose versions a v2Dest keeps, as the client keeps jobs.
const maxV2Jobs = client.DefaultMaxJobs

// dialV2Dest connects to a V2 destination at addr (already resolved and checked) with
// the authority key of rawURL.
func dialV2Dest(ctx context.Context, rawURL, addr, user string, cfg Config, log *slog.Logger) (*v2Dest, error) {
	_, key, err := noise.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(ctx, client.Config{
		URL: noise.FormatURL(addr, key), User: user, Channel: client.Extended,
		MinExtranonceSize: uint16(cfg.SellerExtranonce2Size), Vendor: "hashgrid-market", Firmware: "1",
		DialTimeout: cfg.UpstreamTimeout, CallTimeout: cfg.UpstreamTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	d := &v2Dest{c: c, updates: make(chan stratum.Work, 4), versions: map[uint32]uint32{}}
	go d.translate()
	return d, nil
}

func (d *v2Dest) translate() {
	defer close(d.updates)
	for w := range d.c.Updates() {
		if w.Channel != client.Extended {
			continue
		}
		d.mu.Lock()
		clean := w.PrevHash != d.prev
		d.prev = w.PrevHash
		if _, ok := d.versions[w.JobID]; !ok {
			d.order = append(d.order, w.JobID)
		}
		d.versions[w.JobID] = w.Version
		for len(d.order) > maxV2Jobs {
			delete(d.versions, d.order[0])
			d.order = d.order[1:]
		}
		d.mu.Unlock()
		branch := make([]string, len(w.MerklePath))
		for i, h := range w.MerklePath {
			branch[i] = hex.EncodeToString(h[:])
		}
		var mask uint32
		if w.VersionRolling {
			mask = upstreamVersionMask & sv2.VersionRollingMask
		}
		sw := stratum.Work{
			Notify: &stratum.Notify{
				JobID: strconv.FormatUint(uint64(w.JobID), 16), PrevHash: pow.StratumPrevHash(w.PrevHash),
				Coinb1: hex.EncodeToString(w.CoinbasePrefix), Coinb2: hex.EncodeToString(w.CoinbaseSuffix),
				MerkleBranch: branch, Version: fmt.Sprintf("%08x", w.Version), NBits: fmt.Sprintf("%08x", w.NBits),
				NTime: fmt.Sprintf("%08x", w.NTime), CleanJobs: clean,
			},
			Difficulty:      w.Target.Diff().Float(),
			Extranonce1:     w.ExtranoncePrefix,
			Extranonce2Size: w.ExtranonceSize,
			VersionMask:     mask,
		}
		select {
		case d.updates <- sw:
		case <-d.c.Done():
			return
		}
	}
}

func (d *v2Dest) Updates() <-chan stratum.Work         { return d.updates }
func (d *v2Dest) Done() <-chan struct{}                { return d.c.Done() }
func (d *v2Dest) Err() error                           { return d.c.Err() }
func (d *v2Dest) ReconnectRequest() *stratum.Reconnect { return nil }
func (d *v2Dest) Close() error                         { return d.c.Close() }

// Submit sends a V1-shaped share as SubmitSharesExtended. A rejection comes back as a
// *stratum.Error with the V1 code of the same meaning, as the upstream books it.
func (d *v2Dest) Submit(ctx context.Context, s *stratum.Submit) error {
	id, err := strconv.ParseUint(s.JobID, 16, 32)
	if err != nil {
		return &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	}
	d.mu.Lock()
	version, ok := d.versions[uint32(id)]
	d.mu.Unlock()
	if !ok {
		return &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	}
	en, err := hex.DecodeString(s.Extranonce2)
	if err != nil {
		return fmt.Errorf("v2 destination: extranonce2: %w", err)
	}
	ntime, err1 := strconv.ParseUint(s.NTime, 16, 32)
	nonce, err2 := strconv.ParseUint(s.Nonce, 16, 32)
	if err1 != nil || err2 != nil {
		return errors.New("v2 destination: ntime and nonce must be hex")
	}
	if s.VersionBits != "" {
		vb, err := strconv.ParseUint(s.VersionBits, 16, 32)
		if err != nil {
			return fmt.Errorf("v2 destination: version bits: %w", err)
		}
		const mask = upstreamVersionMask & sv2.VersionRollingMask
		version = (version &^ mask) | (uint32(vb) & mask)
	}
	err = d.c.Submit(ctx, client.Share{JobID: uint32(id), Nonce: uint32(nonce), NTime: uint32(ntime), Version: version, Extranonce: en})
	var se *client.ShareError
	if errors.As(err, &se) {
		code := stratum.ErrCodeOther
		switch se.Code {
		case sv2.CodeStaleShare, sv2.CodeInvalidJobID:
			code = stratum.ErrCodeJobNotFound
		case sv2.CodeDifficultyTooLow:
			code = stratum.ErrCodeLowDifficulty
		case sv2.CodeDuplicateShare:
			code = stratum.ErrCodeDuplicate
		}
		return &stratum.Error{Code: code, Message: se.Code}
	}
	return err
}
