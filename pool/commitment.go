package pool

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/btcsuite/btcd/txscript/v2"

	"github.com/hashgrid/hashgrid/node"
)

// A coinbase commitment is an output script the operator hands the running pool through
// a file (Config.CommitmentFile): while the file exists, every template the pool
// installs gets one more coinbase output, of zero value, after the payouts. The
// registry uses it to anchor its log's head in the pool's own blocks. A file was chosen
// over an API call: it needs no credential, survives a pool restart, and the writer
// (the registry, on the same host) drops it with one rename or remove. The pool reads it
// once per template, so a change reaches miners with the next template.
//
// The output changes no one's payout: its value is zero, and the payouts, their order
// and the window commitment stay as the OutputFunc laid them out. It is left out of a
// template whose block, with it, would exceed the consensus weight limit.

// CommitmentFileName is the commitment file's name in the pool's data directory.
const CommitmentFileName = "coinbase-commitment"

// MaxCommitmentScript bounds a commitment script: 83 bytes, the largest OP_RETURN
// output nodes relay (an 80-byte push), so that the block's coinbase stays standard.
const MaxCommitmentScript = 83

// ReadCommitment reads a commitment file: the output script in hex on its first line.
// A missing file is no commitment: nil, nil. The script must be an OP_RETURN script
// (unspendable, so a zero value is not dust) of at most MaxCommitmentScript bytes.
func ReadCommitment(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pool: commitment: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 2*MaxCommitmentScript+3))
	if err != nil {
		return nil, fmt.Errorf("pool: commitment %s: %w", path, err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	script, err := hex.DecodeString(string(bytes.TrimSpace(line)))
	if err != nil {
		return nil, fmt.Errorf("pool: commitment %s: not hex: %w", path, err)
	}
	if err := checkCommitment(script); err != nil {
		return nil, fmt.Errorf("pool: commitment %s: %w", path, err)
	}
	return script, nil
}

func checkCommitment(script []byte) error {
	if len(script) == 0 || len(script) > MaxCommitmentScript {
		return fmt.Errorf("script of %d bytes, want 1..%d", len(script), MaxCommitmentScript)
	}
	if script[0] != txscript.OP_RETURN {
		return errors.New("script does not start with OP_RETURN")
	}
	return nil
}

// WriteCommitment writes script to the commitment file at path, atomically: a pool
// reading it sees the old content or the new, never a part.
func WriteCommitment(path string, script []byte) error {
	if err := checkCommitment(script); err != nil {
		return fmt.Errorf("pool: commitment: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pool: commitment: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(hex.EncodeToString(script) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("pool: commitment: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pool: commitment: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pool: commitment: %w", err)
	}
	return nil
}

// blockWeight returns the weight of a block of t's transactions under a coinbase of
// cbSize bytes without its witness. A template that commits to witnesses gives the
// coinbase a witness: the marker and flag, one item count, and the 32-byte reserved
// value with its length.
func blockWeight(t *node.Template, cbSize int) int64 {
	n := uint64(1 + len(t.Transactions))
	w := int64(4 * (80 + len(appendVarInt(nil, n)) + cbSize))
	if t.WitnessCommitment != nil {
		w += 2 + 1 + 1 + 32
	}
	for i := range t.Transactions {
		w += t.Transactions[i].Weight
	}
	return w
}
