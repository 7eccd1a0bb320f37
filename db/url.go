package db

import (
	"net/url"
)

// RedactURL returns databaseURL with its password, if any, replaced, so that
// it can be logged or shown in an error.
func RedactURL(databaseURL string) string {
	parsed, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparsable database URL)"
	}
	return parsed.Redacted()
}
