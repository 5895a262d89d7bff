package cli

import (
	"fmt"
	"io"
	"log/slog"
)

// Logs are text (slog's key=value) unless JSON is asked for: `hashgrid --log-format
// json <command>`, $HASHGRID_LOG_FORMAT=json, or a command's own --log-format.
const envLogFormat = "HASHGRID_LOG_FORMAT"

// logWriter is the Stderr that Run hands to commands when logs are wanted in a given
// format: every logger a command builds with newLogger on it writes that format, so a
// command need not carry the global setting itself.
type logWriter struct {
	io.Writer
	format string
}

func checkLogFormat(f string) error {
	switch f {
	case "", "text", "json":
		return nil
	}
	return fmt.Errorf("unknown log format %q (want text or json)", f)
}

func parseLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return l, nil
}

// newLogger returns a logger at level writing to w, in the format Run was given.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return newFormatLogger(w, level, "")
}

// newFormatLogger is newLogger with a format of its own ("" keeps Run's).
func newFormatLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	if err := checkLogFormat(format); err != nil {
		return nil, err
	}
	if lw, ok := w.(logWriter); ok && format == "" {
		format = lw.format
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
