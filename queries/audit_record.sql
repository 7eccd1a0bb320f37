-- name: AuditRecordInsert :exec
INSERT INTO audit_records (action, data, origin_ip, resource_id, resource_type, user_id)
VALUES (@action, @data, @origin_ip, @resource_id, @resource_type, @user_id);
