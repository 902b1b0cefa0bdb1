-- batch_get: a batch's hash as {field, value, ...} (empty when there is no such batch).
--
-- ARGV[1]  batch id

return redis.call('HGETALL', batch_key(ARGV[1]))
