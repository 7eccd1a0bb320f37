package db

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// registerUUID teaches m to encode github.com/google/uuid's UUID (the Go
// type of our uuid columns, see sqlc.yaml) as the 16 bytes it is. Without
// it, pgx takes the UUID for a driver.Valuer: on every parameter it formats
// the UUID as text, fails to encode the text in binary, builds that error,
// and parses the text again. (A result is scanned through the UUID's
// sql.Scanner, which pgx prefers to any wrapper.)
func registerUUID(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapUUIDEncodePlan}, m.TryWrapEncodePlanFuncs...)
}

// uuidValue is a uuid.UUID that pgx's uuid codec encodes.
type uuidValue uuid.UUID

// UUIDValue implements pgtype.UUIDValuer.
func (u uuidValue) UUIDValue() (pgtype.UUID, error) {
	return pgtype.UUID{Bytes: u, Valid: true}, nil
}

// tryWrapUUIDEncodePlan encodes a uuid.UUID, or a non-nil *uuid.UUID (pgx
// encodes a nil one as NULL before it plans), as a uuidValue.
func tryWrapUUIDEncodePlan(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	switch value.(type) {
	case uuid.UUID, *uuid.UUID:
		return &uuidEncodePlan{}, uuidValue{}, true
	}
	return nil, nil, false
}

type uuidEncodePlan struct{ next pgtype.EncodePlan }

func (p *uuidEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *uuidEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	switch value := value.(type) {
	case *uuid.UUID:
		return p.next.Encode(uuidValue(*value), buf)
	default:
		return p.next.Encode(uuidValue(value.(uuid.UUID)), buf)
	}
}
