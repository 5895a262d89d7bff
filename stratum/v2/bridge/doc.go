// Package bridge serves Stratum V2 miners on a Stratum V1 server (package stratum) by
// translating: each V2 mining channel becomes one in-process V1 connection to the
// *stratum.Server, one end of a Unix socket pair (net.Pipe where there is none) handed
// to Server.ServeConn with the miner's real address, so that V2 shares go through exactly the V1 path (validation, share
// stream, vardiff, accounting, strikes and bans by address, the dashboard) and the
// pool or market behind the V1 server knows nothing of V2. The V1 connection's user
// agent is "sv2/VENDOR/FIRMWARE" from SetupConnection, which is how the pool records
// the protocol of a worker.
//
// What it speaks (chapters 3 to 5 of the stratum-mining/sv2-spec repository): the Noise
// handshake as responder (package stratum/v2/noise), SetupConnection for the Mining
// Protocol only, OpenStandardMiningChannel (header-only mining: the bridge fixes the
// channel's extranonce2 and sends NewMiningJob with the merkle root of the V1 job's
// coinbase completed by extranonce1 and that extranonce2), OpenExtendedMiningChannel
// (extranonce_prefix is the V1 extranonce1, extranonce_size the V1 extranonce2 size,
// and NewExtendedMiningJob carries coinb1 and coinb2 as prefix and suffix), SetTarget
// from mining.set_difficulty, sent before the job the difficulty applies to (V1
// applies a difficulty from the next job), SetNewPrevHash for a V1 job with clean_jobs
// or on a new previous block, SubmitSharesStandard and SubmitSharesExtended as
// mining.submit with the V1 verdict as SubmitShares.Success or SubmitShares.Error,
// UpdateChannel (a lower max_target becomes a V1 mining.suggest_difficulty) and
// CloseChannel. Standard channels of one connection share one group channel id.
//
// Version rolling: the V1 side asks mining.configure for the spec's rollable bits
// (sv2.VersionRollingMask); a share that changes bits outside what the V1 server
// granted is answered invalid-non-rollable-version-bit (hashgrid's pool grants BIP
// 320's 0x1fffe000 by default, which is what V2 firmware rolls). A channel's
// max_target becomes the V1 minimum-difficulty extension.
//
// SubmitShares.Success.new_shares_sum is in hashgrid.Diff units (difficulty times
// 2^32), so that fractional test-network difficulties still add up exactly.
//
// Left out: extended channels' group jobs (each channel gets its own jobs),
// SetCustomMiningJob and job declaration, protocol extensions, the unencrypted mode,
// and Reconnect on shutdown (connections are closed; miners reconnect).
//
// Every per-connection resource has a named limit (Limits): the frame size, the
// channels per connection, the jobs kept per channel, the submits awaiting their V1
// answer per channel, the handshake and setup deadline and the idle timeout. A channel
// costs two file descriptors (its socket pair) beside the miner's TCP connection, and
// counts as one V1 connection against the V1 server's limits. A peer
// that fails the handshake, sends a malformed frame or a message it must not send is
// dropped; the server never is.
package bridge
