// Package stratum implements the Stratum V1 mining protocol (newline-delimited JSON-RPC
// 1.0 over TCP) as used by Bitcoin miners: message encoding and decoding shared by the
// server and the client, a server that owns miners' connections with a named limit for
// every per-connection resource, and a client used by hashgrid's own CPU miner and by the
// market's upstream connections.
//
// Methods covered: mining.configure (BIP 310 version rolling), mining.subscribe (with
// session resume), mining.authorize, mining.suggest_difficulty, mining.extranonce.subscribe,
// mining.submit; server messages mining.set_difficulty, mining.notify,
// mining.set_extranonce, mining.set_version_mask, client.reconnect, client.show_message.
// The package knows nothing about blocks or shares' validity: it hands parsed requests to a
// Handler and writes what the Handler answers.
//
// Misbehaviour is held against the connection, never first against its address, since a
// farm may put thousands of devices behind one: bad lines and invalid submits drain
// over Limits.StrikeWindow and past their limits drop that connection alone; a connection
// with nothing but rejected shares for Limits.RejectOnlyTimeout is dropped; an address is
// banned only when its connections keep being dropped for abuse (ban.go).
package stratum
