package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// The keys of a line, in order, the same in both formats:
//
//	time            when the connection ended (RFC 3339, UTC, µs)
//	client          the client's address
//	listener        the listener that accepted it
//	backend         the backend's name
//	backend_address the backend address connected
//	bytes_in        bytes from the client to the backend
//	bytes_out       bytes from the backend to the client
//	duration_ms     from the accept to the end
//	connect_ms      from the accept to the backend connection, retries included
//	ttfb_ms         from the client's first bytes to the backend's first bytes
//	retries         dials after a failed one
//	end             how it ended (End)
//
// A value that does not exist (no backend, no answer) is - in text and
// null in JSON.

const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// AppendText appends r as one logfmt line.
func AppendText(b []byte, r *Record) []byte {
	b = append(b, "time="...)
	b = r.Start.Add(r.Duration).UTC().AppendFormat(b, timeLayout)
	b = append(b, " client="...)
	b = appendAddrText(b, r.Client)
	b = append(b, " listener="...)
	b = appendAddrText(b, r.Listener)
	b = append(b, " backend="...)
	if r.Backend == "" {
		b = append(b, '-')
	} else if needsQuote(r.Backend) {
		b = strconv.AppendQuote(b, r.Backend)
	} else {
		b = append(b, r.Backend...)
	}
	b = append(b, " backend_address="...)
	b = appendAddrText(b, r.BackendAddr)
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, " duration_ms="...)
	b = appendMillis(b, r.Duration, "-")
	b = append(b, " connect_ms="...)
	b = appendMillis(b, r.Connect, "-")
	b = append(b, " ttfb_ms="...)
	b = appendMillis(b, r.TTFB, "-")
	b = append(b, " retries="...)
	b = strconv.AppendInt(b, int64(r.Retries), 10)
	b = append(b, " end="...)
	b = append(b, r.End.String()...)
	return append(b, '\n')
}

// AppendJSON appends r as one JSON object and a newline.
func AppendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Start.Add(r.Duration).UTC().AppendFormat(b, timeLayout)
	b = append(b, `","client":`...)
	b = appendAddrJSON(b, r.Client)
	b = append(b, `,"listener":`...)
	b = appendAddrJSON(b, r.Listener)
	b = append(b, `,"backend":`...)
	if r.Backend == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, r.Backend)
	}
	b = append(b, `,"backend_address":`...)
	b = appendAddrJSON(b, r.BackendAddr)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, r.Duration, "null")
	b = append(b, `,"connect_ms":`...)
	b = appendMillis(b, r.Connect, "null")
	b = append(b, `,"ttfb_ms":`...)
	b = appendMillis(b, r.TTFB, "null")
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(r.Retries), 10)
	b = append(b, `,"end":"`...)
	b = append(b, r.End.String()...)
	return append(b, "\"}\n"...)
}

// appendMillis appends d in milliseconds with µs precision, or none when d
// is negative (the moment never came).
func appendMillis(b []byte, d time.Duration, none string) []byte {
	if d < 0 {
		return append(b, none...)
	}
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
}

func appendAddrText(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, '-')
	}
	return ap.AppendTo(b)
}

func appendAddrJSON(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = ap.AppendTo(b)
	return append(b, '"')
}

// needsQuote: s would not read back as one logfmt value.
func needsQuote(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == '=' || r == '"' || r == '\\' || r >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < ' ':
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		case r == utf8.RuneError:
			b = append(b, `\ufffd`...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
