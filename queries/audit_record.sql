-- name: AuditRecordInsert :exec
INSERT INTO audit_records (action, data, origin_ip, resource_id, resource_type, user_id)
VALUES (@action, @data, @origin_ip, @resource_id, @resource_type, @user_id);

-- AuditRecordListByResource reads the audit records of one resource (a
-- ride: resource_type 'ride'), oldest first.
-- name: AuditRecordListByResource :many
SELECT * FROM audit_records
WHERE resource_type = @resource_type AND resource_id = @resource_id
ORDER BY id;
