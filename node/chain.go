package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
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
		return &RejectedError{Reason: clipN(*res, maxErrorBody)}
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
	// InitialBlockDownload is Bitcoin Core's flag that the node is still catching up
	// with the network (btcd does not send it).
	InitialBlockDownload bool
}

// ChainInfo calls getblockchaininfo.
func (c *Client) ChainInfo(ctx context.Context) (ChainInfo, error) {
	var info ChainInfo
	err := c.call(ctx, c.timeout, "getblockchaininfo", nil, &info)
	return info, err
}

// UnmarshalJSON decodes and checks a getblockchaininfo result.
func (info *ChainInfo) UnmarshalJSON(data []byte) error {
	var j struct {
		Chain         string  `json:"chain"`
		Blocks        int64   `json:"blocks"`
		Headers       int64   `json:"headers"`
		BestBlockHash hexHash `json:"bestblockhash"`
		Difficulty    float64 `json:"difficulty"`
		IBD           bool    `json:"initialblockdownload"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.Chain == "" || j.Blocks < 0 || j.Headers < 0 {
		return fmt.Errorf("chain %q, blocks %d, headers %d out of range", clip(j.Chain), j.Blocks, j.Headers)
	}
	if !validDifficulty(j.Difficulty) {
		return fmt.Errorf("difficulty %v out of range", j.Difficulty)
	}
	*info = ChainInfo{Chain: j.Chain, Blocks: j.Blocks, Headers: j.Headers, BestBlockHash: chainhash.Hash(j.BestBlockHash), Difficulty: j.Difficulty, InitialBlockDownload: j.IBD}
	return nil
}

func validDifficulty(d float64) bool { return d > 0 && !math.IsInf(d, 0) && !math.IsNaN(d) }

// Difficulty calls getdifficulty.
func (c *Client) Difficulty(ctx context.Context) (float64, error) {
	var d difficulty
	err := c.call(ctx, c.timeout, "getdifficulty", nil, &d)
	return float64(d), err
}

type difficulty float64

func (d *difficulty) UnmarshalJSON(data []byte) error {
	var f float64
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	if !validDifficulty(f) {
		return fmt.Errorf("difficulty %v out of range", f)
	}
	*d = difficulty(f)
	return nil
}

// BestBlockHash calls getbestblockhash.
func (c *Client) BestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	var h hexHash
	err := c.call(ctx, c.timeout, "getbestblockhash", nil, &h)
	return chainhash.Hash(h), err
}

// BlockHash calls getblockhash: the hash of the main-chain block at height.
func (c *Client) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if height < 0 {
		return chainhash.Hash{}, fmt.Errorf("getblockhash: height %d out of range", height)
	}
	var h hexHash
	err := c.call(ctx, c.timeout, "getblockhash", []any{height}, &h)
	return chainhash.Hash(h), err
}

// hexHash is a block or transaction hash in RPC hex (byte-reversed) that must be exactly
// 64 hex digits.
type hexHash chainhash.Hash

func (h *hexHash) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if len(s) != 2*chainhash.HashSize {
		return fmt.Errorf("hash %q: want 64 hex digits", clip(s))
	}
	if err := chainhash.DecodeStrict((*chainhash.Hash)(h), s); err != nil {
		return fmt.Errorf("hash %q: want 64 hex digits", clip(s))
	}
	return nil
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
	var h BlockHeader
	err := c.call(ctx, c.timeout, "getblockheader", []any{hash.String(), true}, &h)
	var rpcErr *RPCError
	if errors.As(err, &rpcErr) && rpcErr.Code == CodeInternal && strings.Contains(rpcErr.Message, "not in the main chain") {
		return c.sideChainHeader(ctx, hash)
	}
	if err != nil {
		return BlockHeader{}, err
	}
	if h.Hash != hash {
		return BlockHeader{}, fmt.Errorf("getblockheader: asked for %s, got %s", hash, h.Hash)
	}
	return h, nil
}

// UnmarshalJSON decodes and checks a verbose getblockheader result.
func (h *BlockHeader) UnmarshalJSON(data []byte) error {
	var j struct {
		Hash          hexHash  `json:"hash"`
		Height        int64    `json:"height"`
		Confirmations int64    `json:"confirmations"`
		Time          int64    `json:"time"`
		PreviousHash  *hexHash `json:"previousblockhash"` // the genesis block has none
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.Height < 0 || j.Confirmations < -1 {
		return fmt.Errorf("height %d, confirmations %d out of range", j.Height, j.Confirmations)
	}
	*h = BlockHeader{Hash: chainhash.Hash(j.Hash), Height: j.Height, Confirmations: j.Confirmations, Time: j.Time}
	if j.PreviousHash != nil {
		h.PrevHash = chainhash.Hash(*j.PreviousHash)
	}
	if h.Confirmations < 1 {
		h.Confirmations = -1
	}
	return nil
}

func (c *Client) sideChainHeader(ctx context.Context, hash chainhash.Hash) (BlockHeader, error) {
	var hdr rawHeader
	if err := c.call(ctx, c.timeout, "getblockheader", []any{hash.String(), false}, &hdr); err != nil {
		return BlockHeader{}, err
	}
	if got := (*wire.BlockHeader)(&hdr).BlockHash(); got != hash {
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
	var hs []hexHash
	// Mining is CPU work on the node: allow it the long poll timeout.
	if err := c.call(ctx, c.longPollTimeout, "generate", []any{n}, &hs); err != nil {
		return nil, err
	}
	if len(hs) != n {
		return nil, fmt.Errorf("generate: asked for %d blocks, got %d", n, len(hs))
	}
	out := make([]chainhash.Hash, n)
	for i := range hs {
		out[i] = chainhash.Hash(hs[i])
	}
	return out, nil
}

// rawHeader is a non-verbose getblockheader result: 80 bytes in hex.
type rawHeader wire.BlockHeader

func (h *rawHeader) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != wire.MaxBlockHeaderPayload {
		return fmt.Errorf("raw header %q: want %d bytes of hex", clip(s), wire.MaxBlockHeaderPayload)
	}
	return (*wire.BlockHeader)(h).Deserialize(bytes.NewReader(raw))
}
