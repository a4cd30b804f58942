package service

import (
	"strconv"
	"strings"
)

func parseIntStrict(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}
