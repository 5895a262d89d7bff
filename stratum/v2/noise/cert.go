package noise

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// CertificateSize is the size of a SignatureNoiseMessage.
const CertificateSize = 2 + 4 + 4 + schnorr.SignatureSize

// CertificateVersion is the format version SRI writes (and the only one defined).
const CertificateVersion = 0

// DefaultClockSkew is how far the client's clock may be from the certificate's window,
// SRI's TIME_LEEWAY.
const DefaultClockSkew = 10 * time.Second

var (
	// ErrCertificate is returned when the server's certificate is not signed by the
	// authority the client trusts, for the static key the server used.
	ErrCertificate = errors.New("noise: certificate not signed by the authority")
	// ErrCertificateTime is returned when the certificate is expired or not yet valid.
	ErrCertificateTime = errors.New("noise: certificate outside its validity window")
)

// Certificate is the SignatureNoiseMessage: the authority's signature that a server
// static key may be used between two instants (unix seconds, as u32).
type Certificate struct {
	Version       uint16
	ValidFrom     uint32
	NotValidAfter uint32
	Signature     [schnorr.SignatureSize]byte
}

// Bytes is the wire form: the three integers little-endian, then the signature.
func (c Certificate) Bytes() [CertificateSize]byte {
	var b [CertificateSize]byte
	binary.LittleEndian.PutUint16(b[0:], c.Version)
	binary.LittleEndian.PutUint32(b[2:], c.ValidFrom)
	binary.LittleEndian.PutUint32(b[6:], c.NotValidAfter)
	copy(b[10:], c.Signature[:])
	return b
}

// ParseCertificate decodes the wire form; it checks the length only.
func ParseCertificate(b []byte) (Certificate, error) {
	var c Certificate
	if len(b) != CertificateSize {
		return c, fmt.Errorf("noise: certificate is %d bytes, want %d", len(b), CertificateSize)
	}
	c.Version = binary.LittleEndian.Uint16(b[0:])
	c.ValidFrom = binary.LittleEndian.Uint32(b[2:])
	c.NotValidAfter = binary.LittleEndian.Uint32(b[6:])
	copy(c.Signature[:], b[10:])
	return c, nil
}

// digest is the signed message m = SHA-256(version || valid_from || not_valid_after ||
// server x-only key), the fields little-endian as on the wire.
func (c Certificate) digest(server [32]byte) [32]byte {
	b := c.Bytes()
	d := sha256.New()
	d.Write(b[:10])
	d.Write(server[:])
	var m [32]byte
	d.Sum(m[:0])
	return m
}

// Verify checks that the authority signed c for the server key (x-only), and that now
// lies in [ValidFrom-skew, NotValidAfter+skew].
func (c Certificate) Verify(authority AuthorityKey, server [32]byte, now time.Time, skew time.Duration) error {
	pub, err := authority.pubKey()
	if err != nil {
		return err
	}
	sig, err := schnorr.ParseSignature(c.Signature[:])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	m := c.digest(server)
	if !sig.Verify(m[:], pub) {
		return ErrCertificate
	}
	t, s := now.Unix(), int64(skew/time.Second)
	if t < int64(c.ValidFrom)-s || t > int64(c.NotValidAfter)+s {
		return fmt.Errorf("%w: valid %d to %d, now %d", ErrCertificateTime, c.ValidFrom, c.NotValidAfter, t)
	}
	return nil
}

// Authority holds the pool authority's secret key, which certifies server static keys.
type Authority struct {
	key *btcec.PrivateKey
}

// NewAuthority makes an authority with a fresh key.
func NewAuthority() (*Authority, error) {
	k, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("noise: authority key: %w", err)
	}
	return &Authority{key: k}, nil
}

// AuthorityFromKey wraps an existing secret key.
func AuthorityFromKey(k *btcec.PrivateKey) *Authority { return &Authority{key: k} }

// PublicKey is the key clients put in their pool URL.
func (a *Authority) PublicKey() AuthorityKey { return AuthorityKey(xOnly(a.key.PubKey())) }

// SecretKey is the authority's secret key, for storing it.
func (a *Authority) SecretKey() *btcec.PrivateKey { return a.key }

// Certify signs a certificate for the server static key, valid from validFrom to
// notValidAfter (whole seconds, u32 range).
func (a *Authority) Certify(server *btcec.PublicKey, validFrom, notValidAfter time.Time) (Certificate, error) {
	from, until := validFrom.Unix(), notValidAfter.Unix()
	if from < 0 || until > math.MaxUint32 || until < from {
		return Certificate{}, fmt.Errorf("noise: certificate window %d to %d out of range", from, until)
	}
	c := Certificate{Version: CertificateVersion, ValidFrom: uint32(from), NotValidAfter: uint32(until)}
	m := c.digest(xOnly(server))
	sig, err := schnorr.Sign(a.key, m[:])
	if err != nil {
		return Certificate{}, fmt.Errorf("noise: sign certificate: %w", err)
	}
	copy(c.Signature[:], sig.Serialize())
	return c, nil
}

// Identity is what a server needs for the handshake: its static key and the authority's
// certificate for it.
type Identity struct {
	Static      *btcec.PrivateKey
	Certificate Certificate
}
