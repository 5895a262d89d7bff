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
// # Front-ends
//
// Several pools may run as the Stratum front-ends of one cluster: separate processes,
// on one template source, whose shares meet in one log. Config.FrontEnd numbers them
// 1..MaxFrontEnds (255); 0 is a lone pool and keeps the whole extranonce1 space. A
// numbered front-end's number is the top byte of every extranonce1 it hands out, so two
// front-ends never hand out the same one and never the same work: the coinbase, so
// every header a miner can hash, differs. That leaves each front-end 2^24 (16,777,216)
// extranonce1s, that many subscribed connections at once, far above the stratum
// package's default connection limit of 100,000; when all are held, mining.subscribe
// is refused with an error and the miner dropped, to try another front-end, rather
// than a value handed out twice. A miner that moves to another front-end and asks to
// resume its session there gets a fresh extranonce1: a session id of another front-end
// is never resumed.
//
// The number is also the top byte of every job id (job ids are 64-bit, sent as hex), so
// a job id of one front-end is unknown on every other: a share taken on one and sent
// again to another is refused as "job not found" before it is hashed. Duplicates are
// checked per front-end, and that is enough: a share's header commits to its
// front-end's extranonce1, so the same header can never be accepted by two front-ends.
// A recorded share names its front-end through its job id (JobFrontEnd); the share
// record has no field of its own for it, since crediting does not depend on where a
// share was taken, and the log deduplicates re-sent records by (front-end, local
// sequence) in its own message ids.
//
// # Evidence
//
// One accepted share in Config.SampleRate (every share on regtest, 1 in 1,024
// elsewhere) keeps its 80-byte header in the share record, chosen by its hash
// (Sampled), so that a registry report can carry shares anyone can hash again. While
// the operator's commitment file exists (Config.CommitmentFile), every coinbase carries
// its OP_RETURN script as one more zero-value output; the registry anchors its log
// there (see commitment.go).
//
// It leaves storage, payouts and the HTTP API to other packages: shares leave through
// ShareSink, blocks through BlockSink, coinbase outputs come from an OutputFunc.
package pool
