// Package pool is hashgrid's Stratum V1 mining pool: it turns block templates from the
// node into jobs, hands them to miners over the stratum package's server, validates every
// share exactly (job, sizes, ntime window, BIP 310 version mask, proof of work at the
// difficulty the miner was given for that job, duplicates), submits block candidates at
// once, and hands every share to a durable share sink before the miner is answered.
//
// Share difficulties default per network (NetworkDifficulties): mainnet starts a
// connection at 16384 and never goes below 256, testnet at 42 and 1, signet at 1 and
// 0.001, regtest at 0.001 and 1e-6. Whatever a miner asks for is clamped to the
// configured bounds.
//
// It leaves storage, payouts and the HTTP API to other packages: shares leave through
// ShareSink, blocks through BlockSink, coinbase outputs come from an OutputFunc.
package pool
