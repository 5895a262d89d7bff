package controller

import (
	"context"
	"fmt"

	"github.com/hashgrid/hashgrid/node"
)

// Chain is what a node says the block being mined next earns, the inputs of the live
// hashprice besides the BTC price (which no node knows: the operator configures it).
type Chain struct {
	Network    string // the node's chain name (getblockchaininfo)
	Height     int64  // of the block being mined next
	Difficulty float64
	// SubsidySats and FeesSats are the next block's subsidy and fees, in satoshis.
	SubsidySats int64
	FeesSats    int64
}

// ChainSource gives the chain's current economics (NodeChain reads a node).
type ChainSource interface {
	Chain(ctx context.Context) (Chain, error)
}

// NodeChain reads a bitcoind or btcd node, typically the pool's own: the difficulty
// from getblockchaininfo, the subsidy from the height of the node's block template and
// the chain's halving interval, and the fees as the template's coinbasevalue less that
// subsidy. The template's fees are those of the transactions the node would put in
// the next block: the fees of the block about to be mined, which is what a miner
// earns next (getblockstats, which would give past blocks' fees, is bitcoind's only).
type NodeChain struct {
	Client *node.Client
}

// Chain implements ChainSource.
func (n NodeChain) Chain(ctx context.Context) (Chain, error) {
	info, err := n.Client.ChainInfo(ctx)
	if err != nil {
		return Chain{}, fmt.Errorf("chain: %w", err)
	}
	tmpl, err := n.Client.BlockTemplate(ctx, "")
	if err != nil {
		return Chain{}, fmt.Errorf("chain: %w", err)
	}
	sub := SubsidySats(info.Chain, tmpl.Height)
	fees := tmpl.CoinbaseValue - sub
	if fees < 0 {
		// The chain halves on another schedule than its name says: refuse rather than
		// price hashes with a subsidy the node does not pay.
		return Chain{}, fmt.Errorf("chain: %s template at height %d pays %d sat, less than the subsidy %d sat by the height",
			info.Chain, tmpl.Height, tmpl.CoinbaseValue, sub)
	}
	return Chain{Network: info.Chain, Height: tmpl.Height, Difficulty: info.Difficulty, SubsidySats: sub, FeesSats: fees}, nil
}

// HalvingInterval returns the blocks between subsidy halvings on the chain named as
// getblockchaininfo names it: 150 on regtest, 210,000 on every other network.
func HalvingInterval(network string) int64 {
	if network == "regtest" {
		return 150
	}
	return 210_000
}

// SubsidySats returns the block subsidy at height on network: 50 BTC halved once per
// halving interval, none after 64 halvings.
func SubsidySats(network string, height int64) int64 {
	h := height / HalvingInterval(network)
	if height < 0 || h >= 64 {
		return 0
	}
	return (50 * 100_000_000) >> h
}
