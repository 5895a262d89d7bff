package sv2

// Mining Protocol messages that open, change and close channels (chapter 5.3.2 to
// 5.3.10, 5.3.21 and 5.3.22).

// OpenStandardMiningChannel (client to server) asks for a standard channel, which
// receives only standard jobs (a fixed merkle root).
type OpenStandardMiningChannel struct {
	RequestID       uint32
	UserIdentity    string
	NominalHashRate float32 // h/s; a hint for the first target, never an amount
	MaxTarget       U256
}

func (*OpenStandardMiningChannel) MsgType() uint8 { return TypeOpenStandardMiningChannel }

func (m *OpenStandardMiningChannel) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.RequestID)
	w.Str0255("user_identity", m.UserIdentity)
	w.F32(m.NominalHashRate)
	w.U256(m.MaxTarget)
	return w.Finish("OpenStandardMiningChannel")
}

func (m *OpenStandardMiningChannel) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = OpenStandardMiningChannel{
		RequestID:       r.U32(),
		UserIdentity:    r.Str0255(),
		NominalHashRate: r.F32(),
		MaxTarget:       r.U256(),
	}
	return r.Done("OpenStandardMiningChannel")
}

// OpenStandardMiningChannelSuccess (server to client) opens a standard channel.
type OpenStandardMiningChannelSuccess struct {
	RequestID        uint32
	ChannelID        uint32
	Target           U256
	ExtranoncePrefix []byte // B0_32
	GroupChannelID   uint32
}

func (*OpenStandardMiningChannelSuccess) MsgType() uint8 {
	return TypeOpenStandardMiningChannelSuccess
}

func (m *OpenStandardMiningChannelSuccess) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.RequestID)
	w.U32(m.ChannelID)
	w.U256(m.Target)
	w.B032("extranonce_prefix", m.ExtranoncePrefix)
	w.U32(m.GroupChannelID)
	return w.Finish("OpenStandardMiningChannel.Success")
}

func (m *OpenStandardMiningChannelSuccess) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = OpenStandardMiningChannelSuccess{
		RequestID:        r.U32(),
		ChannelID:        r.U32(),
		Target:           r.U256(),
		ExtranoncePrefix: r.B032(),
		GroupChannelID:   r.U32(),
	}
	return r.Done("OpenStandardMiningChannel.Success")
}

// OpenMiningChannelError (server to client) refuses an OpenStandardMiningChannel or an
// OpenExtendedMiningChannel: the spec has one message, type 0x12, for both.
type OpenMiningChannelError struct {
	RequestID uint32
	ErrorCode string
}

func (*OpenMiningChannelError) MsgType() uint8 { return TypeOpenMiningChannelError }

func (m *OpenMiningChannelError) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.RequestID)
	w.Str0255("error_code", m.ErrorCode)
	return w.Finish("OpenMiningChannel.Error")
}

func (m *OpenMiningChannelError) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = OpenMiningChannelError{RequestID: r.U32(), ErrorCode: r.Str0255()}
	return r.Done("OpenMiningChannel.Error")
}

// OpenExtendedMiningChannel (client to server) asks for an extended channel, which
// receives extended jobs and rolls MinExtranonceSize or more bytes of extranonce.
type OpenExtendedMiningChannel struct {
	RequestID         uint32
	UserIdentity      string
	NominalHashRate   float32
	MaxTarget         U256
	MinExtranonceSize uint16
}

func (*OpenExtendedMiningChannel) MsgType() uint8 { return TypeOpenExtendedMiningChannel }

func (m *OpenExtendedMiningChannel) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.RequestID)
	w.Str0255("user_identity", m.UserIdentity)
	w.F32(m.NominalHashRate)
	w.U256(m.MaxTarget)
	w.U16(m.MinExtranonceSize)
	return w.Finish("OpenExtendedMiningChannel")
}

func (m *OpenExtendedMiningChannel) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = OpenExtendedMiningChannel{
		RequestID:         r.U32(),
		UserIdentity:      r.Str0255(),
		NominalHashRate:   r.F32(),
		MaxTarget:         r.U256(),
		MinExtranonceSize: r.U16(),
	}
	return r.Done("OpenExtendedMiningChannel")
}

// OpenExtendedMiningChannelSuccess (server to client) opens an extended channel.
type OpenExtendedMiningChannelSuccess struct {
	RequestID        uint32
	ChannelID        uint32
	Target           U256
	ExtranonceSize   uint16
	ExtranoncePrefix []byte // B0_32
	GroupChannelID   uint32
}

func (*OpenExtendedMiningChannelSuccess) MsgType() uint8 {
	return TypeOpenExtendedMiningChannelSuccess
}

func (m *OpenExtendedMiningChannelSuccess) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.RequestID)
	w.U32(m.ChannelID)
	w.U256(m.Target)
	w.U16(m.ExtranonceSize)
	w.B032("extranonce_prefix", m.ExtranoncePrefix)
	w.U32(m.GroupChannelID)
	return w.Finish("OpenExtendedMiningChannel.Success")
}

func (m *OpenExtendedMiningChannelSuccess) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = OpenExtendedMiningChannelSuccess{
		RequestID:        r.U32(),
		ChannelID:        r.U32(),
		Target:           r.U256(),
		ExtranonceSize:   r.U16(),
		ExtranoncePrefix: r.B032(),
		GroupChannelID:   r.U32(),
	}
	return r.Done("OpenExtendedMiningChannel.Success")
}

// UpdateChannel (client to server) reports a channel's new hash rate and the largest
// target its devices accept.
type UpdateChannel struct {
	ChannelID       uint32
	NominalHashRate float32
	MaximumTarget   U256
}

func (*UpdateChannel) MsgType() uint8    { return TypeUpdateChannel }
func (m *UpdateChannel) Channel() uint32 { return m.ChannelID }

func (m *UpdateChannel) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.F32(m.NominalHashRate)
	w.U256(m.MaximumTarget)
	return w.Finish("UpdateChannel")
}

func (m *UpdateChannel) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = UpdateChannel{ChannelID: r.U32(), NominalHashRate: r.F32(), MaximumTarget: r.U256()}
	return r.Done("UpdateChannel")
}

// UpdateChannelError (server to client) refuses an UpdateChannel.
type UpdateChannelError struct {
	ChannelID uint32
	ErrorCode string
}

func (*UpdateChannelError) MsgType() uint8    { return TypeUpdateChannelError }
func (m *UpdateChannelError) Channel() uint32 { return m.ChannelID }

func (m *UpdateChannelError) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.Str0255("error_code", m.ErrorCode)
	return w.Finish("UpdateChannel.Error")
}

func (m *UpdateChannelError) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = UpdateChannelError{ChannelID: r.U32(), ErrorCode: r.Str0255()}
	return r.Done("UpdateChannel.Error")
}

// CloseChannel (either direction) ends a channel, or every channel of a group.
type CloseChannel struct {
	ChannelID  uint32
	ReasonCode string
}

func (*CloseChannel) MsgType() uint8    { return TypeCloseChannel }
func (m *CloseChannel) Channel() uint32 { return m.ChannelID }

func (m *CloseChannel) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.Str0255("reason_code", m.ReasonCode)
	return w.Finish("CloseChannel")
}

func (m *CloseChannel) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = CloseChannel{ChannelID: r.U32(), ReasonCode: r.Str0255()}
	return r.Done("CloseChannel")
}

// SetExtranoncePrefix (server to client) changes a channel's extranonce prefix for the
// jobs that follow.
type SetExtranoncePrefix struct {
	ChannelID        uint32
	ExtranoncePrefix []byte // B0_32
}

func (*SetExtranoncePrefix) MsgType() uint8    { return TypeSetExtranoncePrefix }
func (m *SetExtranoncePrefix) Channel() uint32 { return m.ChannelID }

func (m *SetExtranoncePrefix) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.B032("extranonce_prefix", m.ExtranoncePrefix)
	return w.Finish("SetExtranoncePrefix")
}

func (m *SetExtranoncePrefix) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetExtranoncePrefix{ChannelID: r.U32(), ExtranoncePrefix: r.B032()}
	return r.Done("SetExtranoncePrefix")
}

// SetTarget (server to client) sets the largest hash a channel's shares may have.
type SetTarget struct {
	ChannelID     uint32
	MaximumTarget U256
}

func (*SetTarget) MsgType() uint8    { return TypeSetTarget }
func (m *SetTarget) Channel() uint32 { return m.ChannelID }

func (m *SetTarget) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U256(m.MaximumTarget)
	return w.Finish("SetTarget")
}

func (m *SetTarget) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetTarget{ChannelID: r.U32(), MaximumTarget: r.U256()}
	return r.Done("SetTarget")
}

// SetGroupChannel (server to client) puts channels into a group. It is not a channel
// message: the spec clears the channel_msg bit although the payload starts with the
// group's id.
type SetGroupChannel struct {
	GroupChannelID uint32
	ChannelIDs     []uint32 // SEQ0_64K[U32]
}

func (*SetGroupChannel) MsgType() uint8 { return TypeSetGroupChannel }

func (m *SetGroupChannel) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.GroupChannelID)
	WriteSeq064K(&w, "channel_ids", m.ChannelIDs, (*Writer).U32)
	return w.Finish("SetGroupChannel")
}

func (m *SetGroupChannel) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetGroupChannel{GroupChannelID: r.U32(), ChannelIDs: ReadSeq064K(&r, 4, (*Reader).U32)}
	return r.Done("SetGroupChannel")
}
