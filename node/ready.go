package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// RPC error codes by which a node says it cannot serve yet: the same codes in Bitcoin
// Core (src/rpc/protocol.h) and btcd (btcjson/jsonrpcerr.go).
const (
	CodeSafeMode      = -2  // old Core and btcd: "forbidden by safe mode"
	CodeNotConnected  = -9  // no peers: getblocktemplate refuses on a real network
	CodeInWarmup      = -28 // Core while loading: "Loading block index…", "Loading banlist…"
	CodeP2PDisabled   = -31 // Core started without networking: cannot relay a block
	CodeBlockNotFound = -5  // getblockheader of an unknown hash
)

// NotReady reports whether err is a node's answer that it cannot serve the pool now:
// not connected to the network, in initial block download, warming up, or without
// networking. Such an answer comes from a live node, but mining on it would be mining
// on a stale or unknown chain, so a Set fails over from it as from a dead node.
func NotReady(err error) bool {
	var rpcErr *RPCError
	if !errors.As(err, &rpcErr) {
		return false
	}
	switch rpcErr.Code {
	case CodeSafeMode, CodeNotConnected, CodeClientInInitialDL, CodeInWarmup, CodeP2PDisabled:
		return true
	}
	return false
}

// Misconfigured reports whether err means the pool's configuration, not the node's
// state, is wrong: the node refuses the credentials (HTTP 401 or 403). Retrying does
// not help; the operator must fix the URL.
func Misconfigured(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && (he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden)
}

// ErrMisconfigured marks a startup check that failed for a reason only the operator can
// fix: refused credentials or a node on another network.
var ErrMisconfigured = errors.New("node: misconfigured")

// chainName maps the chain names of Bitcoin Core's and btcd's getblockchaininfo, and
// chaincfg's network names, onto one spelling.
func chainName(s string) string {
	switch s {
	case "main", "mainnet":
		return "mainnet"
	case "test", "testnet", "testnet3":
		return "testnet3"
	}
	return s
}

// CheckNetwork asks every node of the set, once, which chain it follows, and returns an
// error wrapping ErrMisconfigured when a node refuses the credentials or follows a chain
// other than network (chaincfg's name: "mainnet", "testnet3", "testnet4", "signet",
// "regtest"). A node that cannot be reached now is only logged: the set fails over
// from it and takes it back when it answers, while a wrong password or a wrong network
// would never heal. Run it before the pool starts.
func (s *Set) CheckNetwork(ctx context.Context, network string) error {
	want := chainName(network)
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
			defer cancel()
			info, err := m.c.ChainInfo(pctx)
			switch {
			case Misconfigured(err):
				var he *HTTPError
				errors.As(err, &he)
				errs[i] = fmt.Errorf("%w: node %s refuses the RPC credentials (http %d): check the user and password in --node", ErrMisconfigured, m.c, he.StatusCode)
			case err != nil:
				s.log.Warn("node not answering at startup; failing over until it does", "node", m.c.String(), "err", err)
			case chainName(info.Chain) != want:
				errs[i] = fmt.Errorf("%w: node %s follows chain %q, but the pool is configured for %q (--network)", ErrMisconfigured, m.c, info.Chain, network)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// BlockView is what one node knows about a found block: whether it has the block on its
// main chain, which block its main chain holds at the block's height, and how far its
// chain goes. A block tracker judges a block from the views of the nodes that answer.
type BlockView struct {
	Node string // redacted URL
	// Known is false when the node has never seen the block.
	Known bool
	// Confirmations is at least 1 when the block is on the node's main chain, else -1.
	Confirmations int64
	// Tip is the height of the node's best block.
	Tip int64
	// AtHeight is the node's main-chain block at the block's height; zero when the
	// node's chain does not reach that height.
	AtHeight chainhash.Hash
}

// BlockView asks the node about the block hash found at height.
func (c *Client) BlockView(ctx context.Context, hash chainhash.Hash, height int64) (BlockView, error) {
	v := BlockView{Node: c.String(), Known: true, Confirmations: -1}
	h, err := c.BlockHeaderVerbose(ctx, hash)
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr) && rpcErr.Code == CodeBlockNotFound:
		v.Known = false
	case err != nil:
		return BlockView{}, err
	case h.Confirmations >= 1 && h.Height >= 0:
		// On the main chain (the common case, once per block per tracker pass): the
		// header alone tells the tip.
		v.Confirmations, v.Tip, v.AtHeight = h.Confirmations, h.Height+h.Confirmations-1, hash
		return v, nil
	default:
		v.Confirmations = h.Confirmations
	}
	info, err := c.ChainInfo(ctx)
	if err != nil {
		return BlockView{}, err
	}
	v.Tip = info.Blocks
	if height >= 0 && info.Blocks >= height {
		at, err := c.BlockHash(ctx, height)
		switch {
		case errors.As(err, &rpcErr) && !NotReady(err):
			// The chain moved down between the two calls (a reorg to a shorter chain).
		case err != nil:
			return BlockView{}, err
		default:
			v.AtHeight = at
		}
	}
	return v, nil
}

// BlockViews asks every node that is up or due for a retry (every node when none is)
// about the block hash found at height, at once, and returns the views of the nodes
// that answered. It fails only when no node answered.
func (s *Set) BlockViews(ctx context.Context, hash chainhash.Hash, height int64) ([]BlockView, error) {
	var ask []*member
	now := s.clock.Now()
	for _, m := range s.members {
		m.mu.Lock()
		if m.up || !now.Before(m.retryAt) {
			ask = append(ask, m)
		}
		m.mu.Unlock()
	}
	if len(ask) == 0 {
		ask = s.members
	}
	views := make([]BlockView, len(ask))
	errs := make([]error, len(ask))
	var wg sync.WaitGroup
	for i, m := range ask {
		wg.Go(func() {
			start := s.clock.Now()
			views[i], errs[i] = m.c.BlockView(ctx, hash, height)
			switch {
			case errs[i] == nil:
				s.success(m, s.clock.Now().Sub(start))
			case ctx.Err() == nil:
				s.failure(m, errs[i])
			}
		})
	}
	wg.Wait()
	var out []BlockView
	var msgs []string
	for i := range ask {
		if errs[i] != nil {
			msgs = append(msgs, errs[i].Error())
			continue
		}
		out = append(out, views[i])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("block views %s: %w: %s", hash, ErrNoNode, strings.Join(msgs, "; "))
	}
	return out, nil
}
