package noise

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// ProtocolName is the Noise protocol name that seeds the handshake hash. It is longer
// than 32 bytes, so the initial hash is its SHA-256.
const ProtocolName = "Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"

// MACSize is the size of a ChaCha20-Poly1305 tag.
const MACSize = chacha20poly1305.Overhead

var (
	// ErrAuthentication is returned when a handshake or transport message fails its MAC:
	// the peer is not who it claims or the bytes were changed on the way.
	ErrAuthentication = errors.New("noise: message authentication failed")
	// errNonceExhausted guards the Noise rule that nonce 2^64-1 is never used.
	errNonceExhausted = errors.New("noise: nonce exhausted")
)

// cipherState is Noise's CipherState: a key (absent before the first MixKey) and the
// next nonce.
type cipherState struct {
	aead cipher.AEAD // nil while the key is empty
	n    uint64
}

func (c *cipherState) initializeKey(k []byte) error {
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		return fmt.Errorf("noise: chacha20poly1305: %w", err)
	}
	c.aead, c.n = aead, 0
	return nil
}

// nonce is 32 zero bits then n little-endian, Noise's convention for ChaChaPoly.
func (c *cipherState) nonce() (nonce [chacha20poly1305.NonceSize]byte, err error) {
	if c.n == math.MaxUint64 {
		return nonce, errNonceExhausted
	}
	binary.LittleEndian.PutUint64(nonce[4:], c.n)
	return nonce, nil
}

// seal appends the encryption of pt to dst; with an empty key it appends pt unchanged.
func (c *cipherState) seal(dst, ad, pt []byte) ([]byte, error) {
	if c.aead == nil {
		return append(dst, pt...), nil
	}
	nonce, err := c.nonce()
	if err != nil {
		return nil, err
	}
	c.n++
	return c.aead.Seal(dst, nonce[:], pt, ad), nil
}

// open appends the decryption of ct to dst. The nonce advances only on success, as the
// spec requires, though the callers here give up on the first failure anyway.
func (c *cipherState) open(dst, ad, ct []byte) ([]byte, error) {
	if c.aead == nil {
		return append(dst, ct...), nil
	}
	nonce, err := c.nonce()
	if err != nil {
		return nil, err
	}
	out, err := c.aead.Open(dst, nonce[:], ct, ad)
	if err != nil {
		return nil, ErrAuthentication
	}
	c.n++
	return out, nil
}

// symmetricState is Noise's SymmetricState: chaining key, handshake hash and the
// handshake's CipherState.
type symmetricState struct {
	cs cipherState
	ck [32]byte
	h  [32]byte
}

// initialize sets h = HASH(protocol name), ck = h, then mixes in the prologue, which is
// empty in SV2: so h = HASH(h), the spec's third step.
func (s *symmetricState) initialize() {
	s.h = sha256.Sum256([]byte(ProtocolName))
	s.ck = s.h
	s.mixHash(nil)
}

func (s *symmetricState) mixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
}

// hkdf2 is the spec's HKDF(ck, ikm): RFC 5869 with ck as salt, empty info, two 32-byte
// outputs.
func hkdf2(ck, ikm []byte) (out1, out2 [32]byte, err error) {
	okm, err := hkdf.Key(sha256.New, ikm, ck, "", 64)
	if err != nil {
		return out1, out2, fmt.Errorf("noise: hkdf: %w", err)
	}
	copy(out1[:], okm[:32])
	copy(out2[:], okm[32:])
	return out1, out2, nil
}

func (s *symmetricState) mixKey(ikm []byte) error {
	ck, k, err := hkdf2(s.ck[:], ikm)
	if err != nil {
		return err
	}
	s.ck = ck
	return s.cs.initializeKey(k[:])
}

func (s *symmetricState) encryptAndHash(pt []byte) ([]byte, error) {
	ct, err := s.cs.seal(nil, s.h[:], pt)
	if err != nil {
		return nil, err
	}
	s.mixHash(ct)
	return ct, nil
}

func (s *symmetricState) decryptAndHash(ct []byte) ([]byte, error) {
	pt, err := s.cs.open(nil, s.h[:], ct)
	if err != nil {
		return nil, err
	}
	s.mixHash(ct)
	return pt, nil
}

// split derives the two transport CipherStates: the first carries initiator-to-responder
// traffic, the second the other direction.
func (s *symmetricState) split() (c1, c2 cipherState, err error) {
	k1, k2, err := hkdf2(s.ck[:], nil)
	if err != nil {
		return c1, c2, err
	}
	if err := c1.initializeKey(k1[:]); err != nil {
		return c1, c2, err
	}
	if err := c2.initializeKey(k2[:]); err != nil {
		return c1, c2, err
	}
	return c1, c2, nil
}
