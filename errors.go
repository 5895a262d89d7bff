package hashgrid

import (
	"errors"
	"fmt"
)

// Error codes shared by every service. Each maps to one HTTP status (httpStatus in
// errors_http.go, the one table) and, where it applies, to a Stratum error code.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTALLOWED   = "method_not_allowed"
	ENOTFOUND     = "not_found"
	ERATELIMITED  = "rate_limited"
	EUNAUTHORIZED = "unauthorized"
	EUNAVAILABLE  = "unavailable"
)

// ErrNotFound is wrapped by stores when a looked-up item does not exist.
var ErrNotFound = &Error{Code: ENOTFOUND, Message: "not found"}

// Error is an application error with a code safe to show to clients. Detail that must
// not leave the process belongs in the wrapped error, which only the log sees.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches on code, so errors.Is(err, ErrNotFound) works for any not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given code and a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL otherwise.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
