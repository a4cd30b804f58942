package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrorKind groups failed requests by what went wrong.
type ErrorKind string

// The error kinds, in the order reports list them.
const (
	ErrConnectRefused ErrorKind = "connect_refused" // nothing listens on the port
	ErrReset          ErrorKind = "reset"           // the peer reset (or broke) the connection
	ErrTimeout        ErrorKind = "timeout"         // the request took longer than Options.Timeout
	ErrEOF            ErrorKind = "eof"             // the peer closed the connection before a whole response
	ErrOther          ErrorKind = "other"           // anything else: DNS, TLS, a malformed response...
)

// errorKinds lists the kinds in report order; kindIndex maps back.
var errorKinds = [...]ErrorKind{ErrConnectRefused, ErrReset, ErrTimeout, ErrEOF, ErrOther}

// label is the kind as the text report shows it.
func (k ErrorKind) label() string {
	switch k {
	case ErrConnectRefused:
		return "connect refused"
	case ErrEOF:
		return "EOF"
	}
	return string(k)
}

// classify returns the index in errorKinds of err's kind.
func classify(err error) int {
	var nerr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return 0
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return 1
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return 2
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return 3
	}
	return 4
}
