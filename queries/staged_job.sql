-- name: StagedJobInsert :exec
INSERT INTO staged_jobs (job_name, job_args) VALUES (@job_name, @job_args);

-- StagedJobDeleteBatch takes the oldest staged jobs out of the table. Rows
-- that another enqueuer has locked are skipped, and rows whose transaction
-- has not committed are invisible, so they stay for a later batch: run in the
-- same transaction as the insert into the job queue, no job is lost or
-- handed over twice.
-- name: StagedJobDeleteBatch :many
DELETE FROM staged_jobs
WHERE id IN (
    SELECT id FROM staged_jobs
    ORDER BY id
    LIMIT @max
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: StagedJobCount :one
SELECT count(*) FROM staged_jobs;

-- StagedJobListByRideID reads the staged jobs whose args name the ride
-- (args.ride_id), oldest first: jobs the enqueuer has not yet moved into
-- River.
-- name: StagedJobListByRideID :many
SELECT * FROM staged_jobs
WHERE job_args->>'ride_id' = sqlc.arg(ride_id)::bigint::text
ORDER BY id;
