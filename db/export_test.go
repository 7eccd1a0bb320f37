package db

// The plans of the codecs that the pools register, for package db_test.
type (
	UUIDEncodePlan     = uuidEncodePlan
	RawMessageScanPlan = rawMessageScanPlan
)
