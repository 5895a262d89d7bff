// Package bench holds hashgrid's load tools: a Stratum V1 load client that can be
// pointed at any pool (submit throughput and reply latency with many connections and
// several submits in flight each; many idle authorized connections; the time for a new
// tip's notify to reach every connection), and a benchmark pool server that runs
// hashgrid's pool, with its durable share stream and SQLite store, on a synthetic
// template at mainnet difficulty so that no share is a block.
//
// The load client sends shares at the difficulty the pool sets; against the benchmark
// pool it asks for a fixed difficulty of 2^-32 (password "d=..."), at which almost
// every header is a valid share, so it needs no hashing of its own: the pool still
// hashes and checks every submit.
package bench
