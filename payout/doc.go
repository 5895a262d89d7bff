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
// The package leaves signing to others: balances above the payout threshold leave
// either through a wallet's sendmany (Bitcoin Core's wallet RPC) or as a batch file for
// the operator to sign.
package payout
