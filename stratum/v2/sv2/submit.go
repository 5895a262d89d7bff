package sv2

// Mining Protocol share submission (chapter 5.3.11 to 5.3.14).

// SubmitSharesStandard (client to server) is a share on a standard job; on an extended
// or group channel's job it is a share with no extranonce of its own.
type SubmitSharesStandard struct {
	ChannelID      uint32
	SequenceNumber uint32
	JobID          uint32
	Nonce          uint32
	NTime          uint32
	Version        uint32 // the whole nVersion, rolled bits included
}

func (*SubmitSharesStandard) MsgType() uint8    { return TypeSubmitSharesStandard }
func (m *SubmitSharesStandard) Channel() uint32 { return m.ChannelID }

func (m *SubmitSharesStandard) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.SequenceNumber)
	w.U32(m.JobID)
	w.U32(m.Nonce)
	w.U32(m.NTime)
	w.U32(m.Version)
	return w.Finish("SubmitSharesStandard")
}

func (m *SubmitSharesStandard) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SubmitSharesStandard{
		ChannelID:      r.U32(),
		SequenceNumber: r.U32(),
		JobID:          r.U32(),
		Nonce:          r.U32(),
		NTime:          r.U32(),
		Version:        r.U32(),
	}
	return r.Done("SubmitSharesStandard")
}

// SubmitSharesExtended (client to server) is a share on an extended channel, with the
// extranonce the client rolled (its length must be the channel's extranonce_size,
// which the server checks).
type SubmitSharesExtended struct {
	ChannelID      uint32
	SequenceNumber uint32
	JobID          uint32
	Nonce          uint32
	NTime          uint32
	Version        uint32
	Extranonce     []byte // B0_32
}

func (*SubmitSharesExtended) MsgType() uint8    { return TypeSubmitSharesExtended }
func (m *SubmitSharesExtended) Channel() uint32 { return m.ChannelID }

func (m *SubmitSharesExtended) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.SequenceNumber)
	w.U32(m.JobID)
	w.U32(m.Nonce)
	w.U32(m.NTime)
	w.U32(m.Version)
	w.B032("extranonce", m.Extranonce)
	return w.Finish("SubmitSharesExtended")
}

func (m *SubmitSharesExtended) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SubmitSharesExtended{
		ChannelID:      r.U32(),
		SequenceNumber: r.U32(),
		JobID:          r.U32(),
		Nonce:          r.U32(),
		NTime:          r.U32(),
		Version:        r.U32(),
		Extranonce:     r.B032(),
	}
	return r.Done("SubmitSharesExtended")
}

// SubmitSharesSuccess (server to client) acknowledges a batch of accepted shares, up
// to LastSequenceNumber. NewSharesSum is an integer sum of the shares' difficulties;
// the spec does not fix the unit, so the server says in its documentation which.
type SubmitSharesSuccess struct {
	ChannelID               uint32
	LastSequenceNumber      uint32
	NewSubmitsAcceptedCount uint32
	NewSharesSum            uint64
}

func (*SubmitSharesSuccess) MsgType() uint8    { return TypeSubmitSharesSuccess }
func (m *SubmitSharesSuccess) Channel() uint32 { return m.ChannelID }

func (m *SubmitSharesSuccess) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.LastSequenceNumber)
	w.U32(m.NewSubmitsAcceptedCount)
	w.U64(m.NewSharesSum)
	return w.Finish("SubmitShares.Success")
}

func (m *SubmitSharesSuccess) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SubmitSharesSuccess{
		ChannelID:               r.U32(),
		LastSequenceNumber:      r.U32(),
		NewSubmitsAcceptedCount: r.U32(),
		NewSharesSum:            r.U64(),
	}
	return r.Done("SubmitShares.Success")
}

// SubmitSharesError (server to client) rejects one share.
type SubmitSharesError struct {
	ChannelID      uint32
	SequenceNumber uint32
	ErrorCode      string
}

func (*SubmitSharesError) MsgType() uint8    { return TypeSubmitSharesError }
func (m *SubmitSharesError) Channel() uint32 { return m.ChannelID }

func (m *SubmitSharesError) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.SequenceNumber)
	w.Str0255("error_code", m.ErrorCode)
	return w.Finish("SubmitShares.Error")
}

func (m *SubmitSharesError) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SubmitSharesError{ChannelID: r.U32(), SequenceNumber: r.U32(), ErrorCode: r.Str0255()}
	return r.Done("SubmitShares.Error")
}
