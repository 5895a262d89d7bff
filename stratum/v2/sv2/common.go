package sv2

// Common Protocol messages (chapter 3.6).

// SetupConnection (client to server) opens a connection; it must be the first message.
type SetupConnection struct {
	Protocol        uint8 // ProtocolMining, ProtocolJobDeclaration, ProtocolTemplateDistribution
	MinVersion      uint16
	MaxVersion      uint16
	Flags           uint32
	EndpointHost    string
	EndpointPort    uint16
	Vendor          string
	HardwareVersion string
	Firmware        string
	DeviceID        string
}

func (*SetupConnection) MsgType() uint8 { return TypeSetupConnection }

func (m *SetupConnection) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U8(m.Protocol)
	w.U16(m.MinVersion)
	w.U16(m.MaxVersion)
	w.U32(m.Flags)
	w.Str0255("endpoint_host", m.EndpointHost)
	w.U16(m.EndpointPort)
	w.Str0255("vendor", m.Vendor)
	w.Str0255("hardware_version", m.HardwareVersion)
	w.Str0255("firmware", m.Firmware)
	w.Str0255("device_id", m.DeviceID)
	return w.Finish("SetupConnection")
}

func (m *SetupConnection) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetupConnection{
		Protocol:        r.U8(),
		MinVersion:      r.U16(),
		MaxVersion:      r.U16(),
		Flags:           r.U32(),
		EndpointHost:    r.Str0255(),
		EndpointPort:    r.U16(),
		Vendor:          r.Str0255(),
		HardwareVersion: r.Str0255(),
		Firmware:        r.Str0255(),
		DeviceID:        r.Str0255(),
	}
	return r.Done("SetupConnection")
}

// SetupConnectionSuccess (server to client) accepts a SetupConnection.
type SetupConnectionSuccess struct {
	UsedVersion uint16
	Flags       uint32
}

func (*SetupConnectionSuccess) MsgType() uint8 { return TypeSetupConnectionSuccess }

func (m *SetupConnectionSuccess) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U16(m.UsedVersion)
	w.U32(m.Flags)
	return w.Finish("SetupConnection.Success")
}

func (m *SetupConnectionSuccess) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetupConnectionSuccess{UsedVersion: r.U16(), Flags: r.U32()}
	return r.Done("SetupConnection.Success")
}

// SetupConnectionError (server to client) refuses a SetupConnection; Flags holds every
// requested flag the server does not support, or 0 for another reason.
type SetupConnectionError struct {
	Flags     uint32
	ErrorCode string
}

func (*SetupConnectionError) MsgType() uint8 { return TypeSetupConnectionError }

func (m *SetupConnectionError) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.Flags)
	w.Str0255("error_code", m.ErrorCode)
	return w.Finish("SetupConnection.Error")
}

func (m *SetupConnectionError) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetupConnectionError{Flags: r.U32(), ErrorCode: r.Str0255()}
	return r.Done("SetupConnection.Error")
}

// ChannelEndpointChanged (server to client) resets a channel's extension state.
type ChannelEndpointChanged struct {
	ChannelID uint32
}

func (*ChannelEndpointChanged) MsgType() uint8    { return TypeChannelEndpointChanged }
func (m *ChannelEndpointChanged) Channel() uint32 { return m.ChannelID }

func (m *ChannelEndpointChanged) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	return w.Finish("ChannelEndpointChanged")
}

func (m *ChannelEndpointChanged) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = ChannelEndpointChanged{ChannelID: r.U32()}
	return r.Done("ChannelEndpointChanged")
}

// Reconnect (server to client) sends the client to another host of the same pool; an
// empty host or a zero port keeps the present one.
type Reconnect struct {
	NewHost string
	NewPort uint16
}

func (*Reconnect) MsgType() uint8 { return TypeReconnect }

func (m *Reconnect) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.Str0255("new_host", m.NewHost)
	w.U16(m.NewPort)
	return w.Finish("Reconnect")
}

func (m *Reconnect) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = Reconnect{NewHost: r.Str0255(), NewPort: r.U16()}
	return r.Done("Reconnect")
}
