package miner

import (
	"context"
	"errors"
	"strings"

	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// v2RollMask is the nVersion bits the miner rolls on V2 work that allows rolling: bits
// 13 to 28, the general-purpose bits of BIP 320. They lie inside what the V2 spec
// allows (sv2.VersionRollingMask) and inside the BIP 310 mask V1 pools grant, so a
// bridge to a V1 pool can pass the share on unchanged.
const v2RollMask = 0x1fffe000

// v2ExtranonceSize is the extranonce the miner asks for on an extended channel: a byte
// per thread and three to count with.
const v2ExtranonceSize = 4

func isV2(url string) bool { return strings.HasPrefix(url, noise.URLScheme+"://") }

// checkURL accepts a Stratum V1 URL or a stratum2+tcp://HOST:PORT/KEY one.
func checkURL(url string) error {
	if isV2(url) {
		if _, _, err := noise.ParseURL(url); err != nil {
			return errors.New("miner: " + err.Error())
		}
		return nil
	}
	_, err := stratum.HostPort(url)
	return err
}

func (m *Miner) sessionV2(ctx context.Context, url string) error {
	c, err := client.Dial(ctx, client.Config{
		URL: url, User: m.cfg.User, Channel: m.cfg.V2Channel, MinExtranonceSize: v2ExtranonceSize,
		Firmware: m.cfg.Agent, Logger: m.log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	submit := func(ctx context.Context, s *share) error { return c.Submit(ctx, s.v2) }
	return mine(ctx, m, c.Updates(), c.Done(), c.Err, newJobV2, submit)
}

// newJobV2 prepares V2 work: header-only with the job's merkle root on a standard
// channel, the coinbase with extranonce prefix and a rolled extranonce on an extended one.
func newJobV2(m *Miner, w client.Work) (*job, error) {
	d := w.Target.Diff()
	j := &job{prev: w.PrevHash, version: w.Version, bits: w.NBits, ntime: w.NTime, target: w.Target.Target(), diff: d}
	if w.VersionRolling && m.cfg.VersionRoll {
		j.mask = v2RollMask
	}
	var err error
	if j.net, err = pow.CompactTarget(w.NBits); err != nil {
		return nil, err
	}
	if w.Channel == client.Standard {
		root := w.MerkleRoot
		j.root = &root
	} else {
		if w.ExtranonceSize == 0 {
			return nil, errors.New("extended channel without extranonce")
		}
		j.head = append(append(make([]byte, 0, len(w.CoinbasePrefix)+len(w.ExtranoncePrefix)), w.CoinbasePrefix...), w.ExtranoncePrefix...)
		j.tail, j.en2Size, j.branch = w.CoinbaseSuffix, w.ExtranonceSize, w.MerklePath
	}
	jobID := w.JobID
	j.share = func(en2 []byte, ntime, nonce, version, _ uint32) share {
		s := share{diff: d, v2: client.Share{JobID: jobID, Nonce: nonce, NTime: ntime, Version: version}}
		if w.Channel == client.Extended {
			s.v2.Extranonce = en2
		}
		return s
	}
	return j, nil
}
