package sv2

// Message types (chapter 8). The numbers are unique across the protocols, so a
// frame's msg_type alone names its message.
const (
	TypeSetupConnection        uint8 = 0x00
	TypeSetupConnectionSuccess uint8 = 0x01
	TypeSetupConnectionError   uint8 = 0x02
	TypeChannelEndpointChanged uint8 = 0x03
	TypeReconnect              uint8 = 0x04

	TypeOpenStandardMiningChannel        uint8 = 0x10
	TypeOpenStandardMiningChannelSuccess uint8 = 0x11
	TypeOpenMiningChannelError           uint8 = 0x12 // answers both Open*MiningChannel
	TypeOpenExtendedMiningChannel        uint8 = 0x13
	TypeOpenExtendedMiningChannelSuccess uint8 = 0x14
	TypeNewMiningJob                     uint8 = 0x15
	TypeUpdateChannel                    uint8 = 0x16
	TypeUpdateChannelError               uint8 = 0x17
	TypeCloseChannel                     uint8 = 0x18
	TypeSetExtranoncePrefix              uint8 = 0x19
	TypeSubmitSharesStandard             uint8 = 0x1a
	TypeSubmitSharesExtended             uint8 = 0x1b
	TypeSubmitSharesSuccess              uint8 = 0x1c
	TypeSubmitSharesError                uint8 = 0x1d
	// 0x1e is reserved.
	TypeNewExtendedMiningJob      uint8 = 0x1f
	TypeSetNewPrevHash            uint8 = 0x20 // the Mining Protocol's; Template Distribution's is 0x72
	TypeSetTarget                 uint8 = 0x21
	TypeSetCustomMiningJob        uint8 = 0x22
	TypeSetCustomMiningJobSuccess uint8 = 0x23
	TypeSetCustomMiningJobError   uint8 = 0x24
	TypeSetGroupChannel           uint8 = 0x25
)

// Protocol numbers of SetupConnection.protocol.
const (
	ProtocolMining               uint8 = 0
	ProtocolJobDeclaration       uint8 = 1
	ProtocolTemplateDistribution uint8 = 2
)

// Version is the only protocol version the spec defines (SetupConnection's
// min_version and max_version, SetupConnection.Success's used_version).
const Version uint16 = 2

// Mining Protocol flags of SetupConnection.flags and SetupConnection.Error.flags
// (chapter 5.3.1).
const (
	FlagRequiresStandardJobs   uint32 = 1 << 0
	FlagRequiresWorkSelection  uint32 = 1 << 1
	FlagRequiresVersionRolling uint32 = 1 << 2
)

// Mining Protocol flags of SetupConnection.Success.flags.
const (
	FlagRequiresFixedVersion     uint32 = 1 << 0
	FlagRequiresExtendedChannels uint32 = 1 << 1
)

// Error codes. The spec leaves them to implementations (chapter 3.5); these are the
// strings the reference implementation (stratum-mining/stratum) sends, so that
// miners and proxies built on it recognise them.
const (
	CodeUnsupportedFeatureFlags      = "unsupported-feature-flags"
	CodeUnsupportedProtocol          = "unsupported-protocol"
	CodeInvalidUserIdentity          = "invalid-user-identity"
	CodeUnknownUser                  = "unknown-user"
	CodeInvalidNominalHashrate       = "invalid-nominal-hashrate"
	CodeMaxTargetOutOfRange          = "max-target-out-of-range"
	CodeMinExtranonceSizeTooLarge    = "min-extranonce-size-too-large"
	CodeUnsupportedMinExtranonceSize = "unsupported-min-extranonce-size"
	CodeExtendedChannelsNotSupported = "extended-channels-not-supported-for-standard-jobs"
	CodeInvalidChannelID             = "invalid-channel-id"
	CodeInvalidShare                 = "invalid-share"
	CodeStaleShare                   = "stale-share"
	CodeInvalidJobID                 = "invalid-job-id"
	CodeDifficultyTooLow             = "difficulty-too-low"
	CodeDuplicateShare               = "duplicate-share"
	CodeBadExtranonceSize            = "bad-extranonce-size"
	CodeVersionRollingNotAllowed     = "version-rolling-not-allowed"
	CodeInvalidNonRollableVersionBit = "invalid-non-rollable-version-bit"
)

// Message is one protocol message: Encode appends its payload (without the frame
// header) to dst; Decode replaces the message with the payload's fields.
type Message interface {
	MsgType() uint8
	Encode(dst []byte) ([]byte, error)
	Decode(payload []byte) error
}

// ChannelMessage is a message whose frame has the channel_msg bit set: its payload
// starts with the U32 channel_id that Channel returns, which proxies route by.
type ChannelMessage interface {
	Message
	Channel() uint32
}

// msgInfo describes a message type: its name, its channel_msg bit, the largest
// payload it can have and a constructor for Decode.
type msgInfo struct {
	name    string
	channel bool
	maxLen  int
	new     func() Message
}

// Sizes of the variable parts, used to state each message's largest payload.
const (
	str0255Max = 1 + MaxStr0255
	b032Max    = 1 + MaxB032
	b0255Max   = 1 + MaxB0255
	b064KMax   = 2 + MaxB064K
	pathMax    = 1 + MaxSeq0255*32
)

var messages = [256]*msgInfo{
	TypeSetupConnection:        {"SetupConnection", false, 1 + 2 + 2 + 4 + str0255Max + 2 + 4*str0255Max, func() Message { return new(SetupConnection) }},
	TypeSetupConnectionSuccess: {"SetupConnection.Success", false, 2 + 4, func() Message { return new(SetupConnectionSuccess) }},
	TypeSetupConnectionError:   {"SetupConnection.Error", false, 4 + str0255Max, func() Message { return new(SetupConnectionError) }},
	TypeChannelEndpointChanged: {"ChannelEndpointChanged", true, 4, func() Message { return new(ChannelEndpointChanged) }},
	TypeReconnect:              {"Reconnect", false, str0255Max + 2, func() Message { return new(Reconnect) }},

	TypeOpenStandardMiningChannel:        {"OpenStandardMiningChannel", false, 4 + str0255Max + 4 + 32, func() Message { return new(OpenStandardMiningChannel) }},
	TypeOpenStandardMiningChannelSuccess: {"OpenStandardMiningChannel.Success", false, 4 + 4 + 32 + b032Max + 4, func() Message { return new(OpenStandardMiningChannelSuccess) }},
	TypeOpenMiningChannelError:           {"OpenMiningChannel.Error", false, 4 + str0255Max, func() Message { return new(OpenMiningChannelError) }},
	TypeOpenExtendedMiningChannel:        {"OpenExtendedMiningChannel", false, 4 + str0255Max + 4 + 32 + 2, func() Message { return new(OpenExtendedMiningChannel) }},
	TypeOpenExtendedMiningChannelSuccess: {"OpenExtendedMiningChannel.Success", false, 4 + 4 + 32 + 2 + b032Max + 4, func() Message { return new(OpenExtendedMiningChannelSuccess) }},
	TypeNewMiningJob:                     {"NewMiningJob", true, 4 + 4 + 5 + 4 + 32, func() Message { return new(NewMiningJob) }},
	TypeUpdateChannel:                    {"UpdateChannel", true, 4 + 4 + 32, func() Message { return new(UpdateChannel) }},
	TypeUpdateChannelError:               {"UpdateChannel.Error", true, 4 + str0255Max, func() Message { return new(UpdateChannelError) }},
	TypeCloseChannel:                     {"CloseChannel", true, 4 + str0255Max, func() Message { return new(CloseChannel) }},
	TypeSetExtranoncePrefix:              {"SetExtranoncePrefix", true, 4 + b032Max, func() Message { return new(SetExtranoncePrefix) }},
	TypeSubmitSharesStandard:             {"SubmitSharesStandard", true, 6 * 4, func() Message { return new(SubmitSharesStandard) }},
	TypeSubmitSharesExtended:             {"SubmitSharesExtended", true, 6*4 + b032Max, func() Message { return new(SubmitSharesExtended) }},
	TypeSubmitSharesSuccess:              {"SubmitShares.Success", true, 4 + 4 + 4 + 8, func() Message { return new(SubmitSharesSuccess) }},
	TypeSubmitSharesError:                {"SubmitShares.Error", true, 4 + 4 + str0255Max, func() Message { return new(SubmitSharesError) }},
	TypeNewExtendedMiningJob:             {"NewExtendedMiningJob", true, 4 + 4 + 5 + 4 + 1 + pathMax + 2*b064KMax, func() Message { return new(NewExtendedMiningJob) }},
	TypeSetNewPrevHash:                   {"SetNewPrevHash", true, 4 + 4 + 32 + 4 + 4, func() Message { return new(SetNewPrevHash) }},
	TypeSetTarget:                        {"SetTarget", true, 4 + 32, func() Message { return new(SetTarget) }},
	TypeSetCustomMiningJob:               {"SetCustomMiningJob", true, 4 + 4 + b0255Max + 4 + 32 + 4 + 4 + 4 + b0255Max + 4 + b064KMax + 4 + pathMax, func() Message { return new(SetCustomMiningJob) }},
	TypeSetCustomMiningJobSuccess:        {"SetCustomMiningJob.Success", true, 4 + 4 + 4, func() Message { return new(SetCustomMiningJobSuccess) }},
	TypeSetCustomMiningJobError:          {"SetCustomMiningJob.Error", true, 4 + 4 + str0255Max, func() Message { return new(SetCustomMiningJobError) }},
	TypeSetGroupChannel:                  {"SetGroupChannel", false, 4 + 2 + MaxSeq064K*4, func() Message { return new(SetGroupChannel) }},
}

// Name returns the spec's name of a message type this package knows, or "".
func Name(msgType uint8) string {
	if m := messages[msgType]; m != nil {
		return m.name
	}
	return ""
}

// IsChannelMsg reports whether frames of a message type this package knows carry the
// channel_msg bit (chapter 8's table).
func IsChannelMsg(msgType uint8) bool {
	m := messages[msgType]
	return m != nil && m.channel
}

// MaxLen returns the largest payload a message type this package knows can have, or 0
// for a type it does not know. A server can bound its read buffer by the largest of
// the messages it accepts.
func MaxLen(msgType uint8) int {
	if m := messages[msgType]; m != nil {
		return m.maxLen
	}
	return 0
}

// New returns an empty message of a type this package knows, or nil.
func New(msgType uint8) Message {
	if m := messages[msgType]; m != nil {
		return m.new()
	}
	return nil
}
