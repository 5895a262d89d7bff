// Package client is a Stratum V2 mining client: it dials a stratum2+tcp://HOST:PORT/KEY
// URL, runs the Noise handshake as initiator and refuses a server whose certificate is
// not signed by KEY, sends SetupConnection for the Mining Protocol, opens one standard
// (header-only) or one extended channel, and then turns the pool's NewMiningJob,
// NewExtendedMiningJob, SetNewPrevHash, SetTarget and SetExtranoncePrefix messages into
// Work a hasher can use, and submits shares with sequence numbers, reporting the pool's
// SubmitShares.Success or SubmitShares.Error for each share.
//
// It mirrors stratum.Client: one Client is one connection with Updates, Done, Err and
// Close; callers that want reconnection loop over Dial. Every resource the server can
// make the client hold is bounded by a named limit in Config: frame payload, jobs kept,
// shares awaiting an answer, the time allowed for each answer.
//
// Left out: group channels beyond accepting jobs addressed to the channel's group, more
// than one channel per connection, custom jobs (SetCustomMiningJob, which needs Job
// Declaration), following Reconnect (the connection ends with an error saying where the
// pool asked to go), UpdateChannel, and the unencrypted mode.
//
// A pool may acknowledge shares in batches: a SubmitShares.Success accepts every share
// up to its last_sequence_number that has not been rejected. The client therefore
// expects the pool to answer a share's rejection no later than the success that covers
// its sequence number, as the spec's batching implies.
package client
