package noise

import (
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ellswift"
)

// The two handshake messages travel raw, without an SV2 frame header, as SRI sends them.
const (
	// Message1Size is the client's act 1: its ephemeral key (-> e).
	Message1Size = EllSwiftSize
	// Message2Size is the server's act 2 (<- e, ee, s, es, certificate): the ephemeral
	// key, the encrypted static key and the encrypted certificate, each sealed with a MAC.
	// (The spec's prose says 170 bytes, a count from before keys grew to 64 bytes; SRI
	// sends and expects 234.)
	Message2Size = EllSwiftSize + EllSwiftSize + MACSize + CertificateSize + MACSize
)

// initiator is the client's side of the handshake between its two messages.
type initiator struct {
	ss   symmetricState
	e    *btcec.PrivateKey
	eEnc [EllSwiftSize]byte
}

// newInitiator draws the ephemeral key and writes act 1.
func newInitiator() (*initiator, [Message1Size]byte, error) {
	e, enc, err := ellswift.EllswiftCreate()
	if err != nil {
		return nil, enc, fmt.Errorf("noise: ephemeral key: %w", err)
	}
	return initiatorWith(e, enc)
}

// initiatorWith starts from a given ephemeral key and encoding, which tests fix to
// compare transcripts byte for byte.
func initiatorWith(e *btcec.PrivateKey, enc [EllSwiftSize]byte) (*initiator, [Message1Size]byte, error) {
	i := &initiator{e: e, eEnc: enc}
	i.ss.initialize()
	i.ss.mixHash(enc[:])
	// The key is still empty, so this only hashes the empty payload; it is kept for the
	// transcript to match the pattern.
	if _, err := i.ss.encryptAndHash(nil); err != nil {
		return nil, enc, err
	}
	return i, enc, nil
}

// serverHello is what act 2 told the client: the server's static key (x-only), the
// certificate it presented, and the transport states.
type serverHello struct {
	static     [32]byte
	cert       Certificate
	send, recv cipherState
}

// readMessage2 processes act 2. It authenticates the bytes (any change fails a MAC) but
// leaves the certificate's check to the caller.
func (i *initiator) readMessage2(msg []byte) (serverHello, error) {
	var hello serverHello
	if len(msg) != Message2Size {
		return hello, fmt.Errorf("noise: handshake message is %d bytes, want %d", len(msg), Message2Size)
	}
	var re, rs [EllSwiftSize]byte
	copy(re[:], msg[:EllSwiftSize])
	msg = msg[EllSwiftSize:]
	i.ss.mixHash(re[:])
	k, err := ecdh(i.e, i.eEnc, re, true)
	if err != nil {
		return hello, err
	}
	if err := i.ss.mixKey(k[:]); err != nil {
		return hello, err
	}
	pt, err := i.ss.decryptAndHash(msg[:EllSwiftSize+MACSize])
	if err != nil {
		return hello, fmt.Errorf("noise: server static key: %w", err)
	}
	msg = msg[EllSwiftSize+MACSize:]
	copy(rs[:], pt)
	k, err = ecdh(i.e, i.eEnc, rs, true)
	if err != nil {
		return hello, err
	}
	if err := i.ss.mixKey(k[:]); err != nil {
		return hello, err
	}
	pt, err = i.ss.decryptAndHash(msg)
	if err != nil {
		return hello, fmt.Errorf("noise: server certificate: %w", err)
	}
	if hello.cert, err = ParseCertificate(pt); err != nil {
		return hello, err
	}
	if hello.static, err = ellSwiftDecodeX(rs); err != nil {
		return hello, err
	}
	// The first key carries initiator-to-responder traffic.
	if hello.send, hello.recv, err = i.ss.split(); err != nil {
		return hello, err
	}
	return hello, nil
}

// respond processes act 1 and writes act 2, returning the server's transport states.
func respond(msg1 []byte, id *Identity) (msg2 []byte, send, recv cipherState, err error) {
	e, eEnc, err := ellswift.EllswiftCreate()
	if err != nil {
		return nil, send, recv, fmt.Errorf("noise: ephemeral key: %w", err)
	}
	sEnc, err := ellSwiftEncode(id.Static.PubKey())
	if err != nil {
		return nil, send, recv, err
	}
	return respondWith(msg1, id, e, eEnc, sEnc)
}

// respondWith is respond with the ephemeral key and the static key's encoding given.
func respondWith(msg1 []byte, id *Identity, e *btcec.PrivateKey, eEnc, sEnc [EllSwiftSize]byte) (msg2 []byte, send, recv cipherState, err error) {
	if len(msg1) != Message1Size {
		return nil, send, recv, fmt.Errorf("noise: handshake message is %d bytes, want %d", len(msg1), Message1Size)
	}
	var ss symmetricState
	ss.initialize()
	var re [EllSwiftSize]byte
	copy(re[:], msg1)
	ss.mixHash(re[:])
	if _, err := ss.decryptAndHash(nil); err != nil {
		return nil, send, recv, err
	}

	out := make([]byte, 0, Message2Size)
	out = append(out, eEnc[:]...)
	ss.mixHash(eEnc[:])
	k, err := ecdh(e, eEnc, re, false)
	if err != nil {
		return nil, send, recv, err
	}
	if err := ss.mixKey(k[:]); err != nil {
		return nil, send, recv, err
	}

	ct, err := ss.encryptAndHash(sEnc[:])
	if err != nil {
		return nil, send, recv, err
	}
	out = append(out, ct...)
	k, err = ecdh(id.Static, sEnc, re, false)
	if err != nil {
		return nil, send, recv, err
	}
	if err := ss.mixKey(k[:]); err != nil {
		return nil, send, recv, err
	}

	cert := id.Certificate.Bytes()
	ct, err = ss.encryptAndHash(cert[:])
	if err != nil {
		return nil, send, recv, err
	}
	out = append(out, ct...)
	c1, c2, err := ss.split()
	if err != nil {
		return nil, send, recv, err
	}
	return out, c2, c1, nil
}
