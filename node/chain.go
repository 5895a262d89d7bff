package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// maxGenerate bounds Generate: regtest tests never need more in one call.
const maxGenerate = 1000

// RejectedError is a submitblock rejection: the node answered with a reason string
// (BIP 22), such as "duplicate", "high-hash" or btcd's "rejected: already have block …".
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string { return "submitblock: block rejected: " + e.Reason }

// Duplicate reports whether the node already had the block: for a pool that submits to
// several nodes this is success, not failure.
func (e *RejectedError) Duplicate() bool {
	return e.Reason == "duplicate" || strings.Contains(e.Reason, "already have block")
}

// SubmitBlock sends a solved block. It returns nil when the node accepted it, a
// *RejectedError carrying the node's reason when it refused, and another error when the
// call itself failed (then the block's fate is unknown).
func (c *Client) SubmitBlock(ctx context.Context, block *wire.MsgBlock) error {
	var buf bytes.Buffer
	buf.Grow(block.SerializeSize())
	if err := block.Serialize(&buf); err != nil {
		return fmt.Errorf("submitblock: encode: %w", err)
	}
	return c.SubmitBlockHex(ctx, hex.EncodeToString(buf.Bytes()))
}

// SubmitBlockHex is SubmitBlock for an already serialized block in hex.
func (c *Client) SubmitBlockHex(ctx context.Context, blockHex string) error {
	var res *string
	if err := c.call(ctx, c.timeout, "submitblock", []any{blockHex}, &res); err != nil {
		return err
	}
	if res != nil {
		return &RejectedError{Reason: clip(*res)}
	}
	return nil
}

// ChainInfo is the part of getblockchaininfo the pool uses.
type ChainInfo struct {
	Chain         string // "main", "test", "regtest", "signet" (btcd: "mainnet", "testnet3", "regtest", …)
	Blocks        int64
	Headers       int64
	BestBlockHash chainhash.Hash
	Difficulty    float64
}

// ChainInfo calls getblockchaininfo.
func (c *Client) ChainInfo(ctx context.Context) (ChainInfo, error) {
	var j struct {
		Chain         string  `json:"chain"`
		Blocks        int64   `json:"blocks"`
		Headers       int64   `json:"headers"`
		BestBlockHash string  `json:"bestblockhash"`
		Difficulty    float64 `json:"difficulty"`
	}
	if err := c.call(ctx, c.timeout, "getblockchaininfo", nil, &j); err != nil {
		return ChainInfo{}, err
	}
	info := ChainInfo{Chain: j.Chain, Blocks: j.Blocks, Headers: j.Headers, Difficulty: j.Difficulty}
	if err := chainhash.DecodeStrict(&info.BestBlockHash, j.BestBlockHash); err != nil || len(j.BestBlockHash) != 64 {
		return ChainInfo{}, fmt.Errorf("getblockchaininfo: bestblockhash %q: want 64 hex digits", clip(j.BestBlockHash))
	}
	if j.Chain == "" || j.Blocks < 0 || j.Headers < 0 {
		return ChainInfo{}, fmt.Errorf("getblockchaininfo: bad reply (chain %q, blocks %d)", clip(j.Chain), j.Blocks)
	}
	if !validDifficulty(j.Difficulty) {
		return ChainInfo{}, fmt.Errorf("getblockchaininfo: difficulty %v out of range", j.Difficulty)
	}
	return info, nil
}

func validDifficulty(d float64) bool { return d > 0 && !math.IsInf(d, 0) && !math.IsNaN(d) }

// Difficulty calls getdifficulty.
func (c *Client) Difficulty(ctx context.Context) (float64, error) {
	var d float64
	if err := c.call(ctx, c.timeout, "getdifficulty", nil, &d); err != nil {
		return 0, err
	}
	if !validDifficulty(d) {
		return 0, fmt.Errorf("getdifficulty: %v out of range", d)
	}
	return d, nil
}

// BestBlockHash calls getbestblockhash.
func (c *Client) BestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	var s string
	if err := c.call(ctx, c.timeout, "getbestblockhash", nil, &s); err != nil {
		return chainhash.Hash{}, err
	}
	return parseHash("getbestblockhash", s)
}

// BlockHash calls getblockhash: the hash of the main-chain block at height.
func (c *Client) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if height < 0 {
		return chainhash.Hash{}, fmt.Errorf("getblockhash: height %d out of range", height)
	}
	var s string
	if err := c.call(ctx, c.timeout, "getblockhash", []any{height}, &s); err != nil {
		return chainhash.Hash{}, err
	}
	return parseHash("getblockhash", s)
}

func parseHash(method, s string) (chainhash.Hash, error) {
	var h chainhash.Hash
	if err := chainhash.DecodeStrict(&h, s); err != nil || len(s) != 64 {
		return h, fmt.Errorf("%s: %q: want 64 hex digits", method, clip(s))
	}
	return h, nil
}

// BlockHeader is the part of a verbose getblockheader the pool uses.
type BlockHeader struct {
	Hash chainhash.Hash
	// Height is -1 when the node cannot tell (btcd, for a block off the main chain).
	Height int64
	// Confirmations is -1 when the block is not on the main chain (orphaned).
	Confirmations int64
	Time          int64
	PrevHash      chainhash.Hash
}

// BlockHeaderVerbose calls getblockheader with verbose=true. A known block off the main
// chain gives Confirmations -1 on both nodes (btcd answers it with an internal error,
// so the raw header is fetched instead).
func (c *Client) BlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (BlockHeader, error) {
	var j struct {
		Hash          string `json:"hash"`
		Height        int64  `json:"height"`
		Confirmations int64  `json:"confirmations"`
		Time          int64  `json:"time"`
		PreviousHash  string `json:"previousblockhash"`
	}
	err := c.call(ctx, c.timeout, "getblockheader", []any{hash.String(), true}, &j)
	var rpcErr *RPCError
	if errors.As(err, &rpcErr) && rpcErr.Code == CodeInternal && strings.Contains(rpcErr.Message, "not in the main chain") {
		return c.sideChainHeader(ctx, hash)
	}
	if err != nil {
		return BlockHeader{}, err
	}
	h := BlockHeader{Height: j.Height, Confirmations: j.Confirmations, Time: j.Time}
	if h.Hash, err = parseHash("getblockheader", j.Hash); err != nil {
		return BlockHeader{}, err
	}
	if h.Hash != hash {
		return BlockHeader{}, fmt.Errorf("getblockheader: asked for %s, got %s", hash, h.Hash)
	}
	if j.PreviousHash != "" { // the genesis block has none
		if h.PrevHash, err = parseHash("getblockheader", j.PreviousHash); err != nil {
			return BlockHeader{}, err
		}
	}
	if h.Height < 0 || h.Confirmations < -1 {
		return BlockHeader{}, fmt.Errorf("getblockheader: height %d, confirmations %d out of range", h.Height, h.Confirmations)
	}
	if h.Confirmations < 1 {
		h.Confirmations = -1
	}
	return h, nil
}

func (c *Client) sideChainHeader(ctx context.Context, hash chainhash.Hash) (BlockHeader, error) {
	var s string
	if err := c.call(ctx, c.timeout, "getblockheader", []any{hash.String(), false}, &s); err != nil {
		return BlockHeader{}, err
	}
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != wire.MaxBlockHeaderPayload {
		return BlockHeader{}, fmt.Errorf("getblockheader: raw header %q: want %d bytes of hex", clip(s), wire.MaxBlockHeaderPayload)
	}
	var hdr wire.BlockHeader
	if err := hdr.Deserialize(bytes.NewReader(raw)); err != nil {
		return BlockHeader{}, fmt.Errorf("getblockheader: %w", err)
	}
	if got := hdr.BlockHash(); got != hash {
		return BlockHeader{}, fmt.Errorf("getblockheader: asked for %s, got %s", hash, got)
	}
	return BlockHeader{Hash: hash, Height: -1, Confirmations: -1, Time: hdr.Timestamp.Unix(), PrevHash: hdr.PrevBlock}, nil
}

// Generate mines n blocks to the node's mining address (btcd's generate; regtest and
// simnet only). It returns the new blocks' hashes.
func (c *Client) Generate(ctx context.Context, n int) ([]chainhash.Hash, error) {
	if n < 1 || n > maxGenerate {
		return nil, fmt.Errorf("generate: %d blocks out of range 1..%d", n, maxGenerate)
	}
	var ss []string
	// Mining is CPU work on the node: allow it the long poll timeout.
	if err := c.call(ctx, c.longPollTimeout, "generate", []any{n}, &ss); err != nil {
		return nil, err
	}
	if len(ss) != n {
		return nil, fmt.Errorf("generate: asked for %d blocks, got %d", n, len(ss))
	}
	hs := make([]chainhash.Hash, n)
	for i, s := range ss {
		h, err := parseHash("generate", s)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	return hs, nil
}
