// Package noise is the encryption layer of Stratum V2: the handshake
// Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256 with the server's static key certified by
// a pool authority, and the encrypted framing of SV2 messages that follows it, as chapter
// 4 ("Protocol Security") of the stratum-mining/sv2-spec repository defines them and as
// the reference implementation (the noise_sv2 and codec_sv2 crates of the Stratum
// Reference Implementation, SRI) puts them on the wire.
//
// What it covers:
//   - the two handshake messages, sent raw with no frame header: the client's 64-byte
//     ElligatorSwift ephemeral key, then the server's 234 bytes (ephemeral key, encrypted
//     static key, encrypted certificate); ECDH is BIP 324's v2_ecdh (x-only, hashed with
//     both encodings in initiator-first order);
//   - the certificate (SignatureNoiseMessage): a BIP 340 signature by the authority over
//     SHA-256(version || valid_from || not_valid_after || server x-only key), checked by
//     the client against the authority key it was given, with the same 10 s of clock
//     leeway as SRI;
//   - transport frames: the 6-byte SV2 header sealed on its own (22 bytes on the wire),
//     then the payload in chunks of at most 65519 plaintext bytes, each sealed with its
//     own MAC and nonce; an empty payload sends the header alone;
//   - the authority key in base58-check with its [1, 0] version prefix, as in the
//     stratum2+tcp://HOST:PORT/KEY URL, and secret keys in SRI's base58-check form, so
//     that keys move between hashgrid and SRI configurations;
//   - keys and the server's certificate kept in a data directory across restarts.
//
// What it leaves out: the SV2 messages themselves (a payload is opaque bytes here), the
// unencrypted local-network mode, and rekeying, which the spec does not define (a
// connection fails when a nonce would wrap, after 2^64-1 messages). A Conn is one reader
// and one writer: ReadFrame and WriteFrame may run at the same time, but each only from
// one goroutine at a time, which the package enforces with a lock per direction.
//
// A decryption failure, a malformed or over-long frame, or a bad certificate is an error,
// after which the Conn refuses further use; the caller closes the connection.
package noise
