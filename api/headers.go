package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// headerIdempotencyKey carries the client's idempotency key.
const headerIdempotencyKey = "Idempotency-Key"

// errAmbiguousHeader is a header that must hold one value but came on more
// than one line, or as a comma-separated list, which is what a proxy makes
// of repeated lines when it merges them. Taking either value could act on
// a request the client did not mean.
type errAmbiguousHeader struct {
	name string
	list bool // one line holding a list, rather than repeated lines
}

func (e errAmbiguousHeader) Error() string {
	if e.list {
		return fmt.Sprintf("%s must hold one value, not a comma-separated list.", e.name)
	}
	return fmt.Sprintf("%s must be sent once: the request has more than one %s header line.", e.name, e.name)
}

// readAuthorization returns the request's one credential, the value of its
// Authorization header, for rides.Creator.Authenticate to read as its mode
// says. Only the header's shape is checked here, the same in every mode.
func readAuthorization(header http.Header) (string, error) {
	values := header.Values(echo.HeaderAuthorization)
	switch {
	case len(values) > 1:
		return "", errAmbiguousHeader{name: echo.HeaderAuthorization}
	case len(values) == 0 || values[0] == "":
		return "", errAuthRequired
	case strings.Contains(values[0], ","): // no credential holds a comma
		return "", errAmbiguousHeader{name: echo.HeaderAuthorization, list: true}
	}
	return values[0], nil
}

// readIdempotencyKey returns the request's one idempotency key, validated
// by ParseIdempotencyKey.
func readIdempotencyKey(header http.Header) (string, error) {
	values := header.Values(headerIdempotencyKey)
	if len(values) > 1 {
		return "", errAmbiguousHeader{name: headerIdempotencyKey}
	}
	return ParseIdempotencyKey(header.Get(headerIdempotencyKey))
}

// allowMethods answers a method that a route does not have, OPTIONS
// included, with 405 and an Allow header listing the route's methods, the
// same for every method. Left alone, Echo answers OPTIONS with 204 and lists
// OPTIONS in every Allow header, a method the API does not serve.
func allowMethods(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Echo's router sets this only when the path has routes but none
		// for the request's method.
		routed, ok := c.Get(echo.ContextKeyHeaderAllow).(string)
		if !ok {
			return next(c)
		}
		var methods []string
		for _, method := range strings.Split(routed, ", ") {
			if method != http.MethodOptions {
				methods = append(methods, method)
			}
		}
		c.Response().Header().Set(echo.HeaderAllow, strings.Join(methods, ", "))
		return echo.ErrMethodNotAllowed
	}
}
