// Package payout turns found blocks and accepted shares into money owed to miners:
// the PPLNS, PPS, FPPS and SOLO schemes, the split of a reward in integer satoshis, the
// commitment to each PPLNS share window that the pool places in the coinbase, and the
// verification a miner runs against what the pool publishes. Every credit, maturity,
// reversal and payout is an entry in the one ledger (package ledger); balances are
// never kept anywhere else.
//
// Rounding rule: a reward R is split as fee = floor(R·fee_bps/10000); each miner gets
// floor((R−fee)·w/W) for its weight w of the window's W; the remainder ("dust", fewer
// satoshis than there are miners in the window) goes to the pool with the fee. The
// credits, the fee and the dust always add up to R exactly.
//
// # Window commitment
//
// A PPLNS window is the newest accepted shares whose difficulties add up to its size,
// N·(network difficulty); the oldest is cut to fit (CutWindow). The coinbase commits
// to WindowParams.Commitment: SHA-256d over the parameters (N, bits, size, fee and
// direct-output settings, first and last Seq, count, the oldest share's cut weight,
// the total, and the Merkle root over the shares' leaves, oldest first). Anyone can
// rebuild it from the published shares (RebuildWindow, Verify, `hashgrid verify`).
// Two formats exist, told apart by WindowParams.Version and by the tag the commitment
// hashes first:
//
//   - Version 1 (no version field; tag "hgwwin01"): each leaf (Leaf) includes the
//     share's counted weight, and the tree pairs leaves from the oldest share
//     (MerkleRoot, an odd node carried up). Every window committed before version 2
//     stays in this format and still rebuilds and verifies.
//   - Version 2 (tag "hgwwin02", what the pool commits to now): a leaf (LeafV2) leaves
//     the weight out, since the parameters already say the oldest share's cut weight
//     and every other share counts its difficulty; the window's i-th share sits at
//     position Base+i of a tree aligned on absolute positions (AlignedRoot), and Base
//     is committed after Total. A window that slides forward then shares every node
//     wholly inside both windows with the one before it. The pool numbers shares
//     as it adds them, from 0 when it starts: Base means nothing beyond its window,
//     it only has to be the one committed. A verifier built before version 2 finds
//     a version 2 window not matching its commitment; it must be upgraded.
//
// # The live window
//
// The pool cuts a window for its coinbase at most every SnapshotInterval while shares
// arrive. So that neither adding a share nor cutting costs more as the window grows,
// the live window (live.go) keeps, as shares arrive: each share's Seq, difficulty,
// address (as an index into a table of the addresses held) and version 2 leaf, 52
// bytes a share in blocks of 4096 that are freed whole; the hash of every tree node
// over 64 leaves or more whose leaves are all held (about one byte a share); the
// position where the window starts, its work, and each address's weight in it. A
// share added costs one leaf hash and on average about one node hash; the shares that
// leave the window or the retained work (twice the window's) are each dropped once.
// A cut hashes only the nodes along the window's two edges: below the kept level at
// most 63 hashes over the leaves of the partial 64-leaf chunk at each edge, above it
// at most two a level, O(log n) in all, plus one step per address in the window for
// the weights the coinbase is split by (O(addresses), not O(shares)). A change of the network difficulty
// moves the window's start once, one step per share that changes sides. Nothing is
// copied per cut. Crediting a found block rebuilds its window from the share store
// once (RebuildWindow, O(n)), checked against the commitment in its coinbase.
//
// The package leaves signing to others: balances above the payout threshold leave
// either through a wallet's sendmany (Bitcoin Core's wallet RPC) or as a batch file for
// the operator to sign. A hashrate market sharing the book (package market) credits
// its sellers' earnings to the same miner:ADDRESS:balance accounts, so payout runs pay
// sellers exactly as they pay the pool's miners.
package payout
