package db

import (
	"encoding/json"

	"github.com/jackc/pgx/v5/pgtype"
)

// registerJSONB teaches m to scan a jsonb column into a json.RawMessage
// (the Go type of our jsonb columns, see sqlc.yaml) as a copy of its bytes.
// pgx scans a []byte so, but runs any other type through json.Unmarshal,
// which checks the whole document before RawMessage copies it: 5% of the
// API's CPU on a replay, for JSON that PostgreSQL itself wrote.
func registerJSONB(m *pgtype.Map) {
	codec := &jsonbCodec{JSONBCodec: pgtype.JSONBCodec{Marshal: json.Marshal, Unmarshal: json.Unmarshal}}
	m.RegisterType(&pgtype.Type{Name: "jsonb", OID: pgtype.JSONBOID, Codec: codec})
}

// jsonbCodec is pgx's jsonb codec, but for a json.RawMessage target, which
// it scans as a []byte.
type jsonbCodec struct {
	pgtype.JSONBCodec
}

func (c *jsonbCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*json.RawMessage); ok {
		if next := c.JSONBCodec.PlanScan(m, oid, format, new([]byte)); next != nil {
			return &rawMessageScanPlan{next: next}
		}
	}
	return c.JSONBCodec.PlanScan(m, oid, format, target)
}

// rawMessageScanPlan scans into a *json.RawMessage with the plan of a
// *[]byte.
type rawMessageScanPlan struct {
	next pgtype.ScanPlan
}

func (p *rawMessageScanPlan) Scan(src []byte, dst any) error {
	return p.next.Scan(src, (*[]byte)(dst.(*json.RawMessage)))
}
