package dbospeer

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
)

// Limits of a request, as rocketrides has them.
const (
	idempotencyKeyMinLength = 20
	idempotencyKeyMaxLength = 255
	maxBodyBytes            = 64 << 10
)

// problemTypeBase prefixes a problem's type, as rocketrides' does.
const problemTypeBase = "https://github.com/rocketrides/rocketrides#problem-"

// problem is an RFC 9457 problem body, in rocketrides' shape.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// problemResponse returns a problem as a response.
func problemResponse(status int, kind, detail string) response {
	body, _ := json.Marshal(&problem{Type: problemTypeBase + kind, Title: http.StatusText(status), Status: status, Detail: detail}) // cannot fail
	return response{Status: status, Body: string(body)}
}

// createRide is POST /rides: the rider by the email in Authorization, the
// idempotency key, the coordinates, then the key's workflow, run or
// replayed. The handler stays thin: the work is rideWorkflow's.
func (p *Peer) createRide(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	email := r.Header.Get("Authorization")
	if email == "" {
		writeResponse(w, problemResponse(http.StatusUnauthorized, "auth-required", "Please specify credentials in the Authorization header."))
		return
	}
	var in rideInput
	err := p.pool.QueryRow(ctx, "SELECT id, stripe_customer_id FROM users WHERE email = $1", email).Scan(&in.UserID, &in.CustomerID)
	if errors.Is(err, pgx.ErrNoRows) {
		writeResponse(w, problemResponse(http.StatusUnauthorized, "auth-invalid", "Credentials in Authorization were invalid."))
		return
	}
	if err != nil {
		p.fail(w, r, fmt.Errorf("getting user: %w", err))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) < idempotencyKeyMinLength || len(key) > idempotencyKeyMaxLength {
		writeResponse(w, problemResponse(http.StatusBadRequest, "idempotency-key-invalid",
			fmt.Sprintf("Idempotency-Key must be %d to %d characters long.", idempotencyKeyMinLength, idempotencyKeyMaxLength)))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	var invalid string
	if in.Params, invalid = readParams(r); invalid != "" {
		writeResponse(w, problemResponse(http.StatusUnprocessableEntity, "invalid-parameter", invalid))
		return
	}
	in.OriginIP = remoteAddr(r)

	// The root context: a client that hangs up does not stop its workflow.
	handle, err := dbos.RunWorkflow(p.dbos, p.rideWorkflow, in, dbos.WithWorkflowID(workflowID(in.UserID, key)))
	if err != nil {
		p.fail(w, r, fmt.Errorf("starting workflow: %w", err))
		return
	}
	result, err := handle.GetResult(dbos.WithHandlePollingInterval(p.config.ResultPollInterval))
	if err != nil {
		p.fail(w, r, fmt.Errorf("running workflow %s: %w", handle.GetWorkflowID(), err))
		return
	}
	writeResponse(w, result)
}

// readParams reads the four coordinates of a form-encoded body, or says
// what is wrong with them.
func readParams(r *http.Request) (params, string) {
	if err := r.ParseForm(); err != nil {
		return params{}, "The request body is not a valid form."
	}
	var parsed params
	for _, coordinate := range []struct {
		name  string
		limit float64
		into  *float64
	}{
		{"origin_lat", 90, &parsed.OriginLat},
		{"origin_lon", 180, &parsed.OriginLon},
		{"target_lat", 90, &parsed.TargetLat},
		{"target_lon", 180, &parsed.TargetLon},
	} {
		raw := r.PostForm.Get(coordinate.name)
		if raw == "" {
			return params{}, fmt.Sprintf("Please specify parameter '%s'.", coordinate.name)
		}
		value, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(value) || math.Abs(value) > coordinate.limit {
			return params{}, fmt.Sprintf("Parameter '%s' must be a number from -%g to %g.", coordinate.name, coordinate.limit, coordinate.limit)
		}
		*coordinate.into = value
	}
	return parsed, ""
}

// remoteAddr is the client's address, for the audit record.
func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr.Unmap()
}

// fail logs an unexpected error and answers 503: the same key may be sent
// again.
func (p *Peer) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.logger.ErrorContext(r.Context(), "dbospeer: request failed", slog.String("error", err.Error()))
	writeResponse(w, problemResponse(http.StatusServiceUnavailable, "unavailable",
		"The ride could not be created now. Please retry with the same Idempotency-Key."))
}

// writeResponse writes a response, a problem with its media type.
func writeResponse(w http.ResponseWriter, resp response) {
	contentType := "application/json"
	if resp.Status >= http.StatusBadRequest {
		contentType = "application/problem+json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(resp.Status)
	_, _ = w.Write([]byte(resp.Body))
}
