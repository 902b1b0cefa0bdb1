-- batch_stage: keep one chunk of a large create or append (see _batch.lua) until the
-- call that commits it (batch_add.lua) takes every chunk at once; nothing is stored as a
-- job here, so a batch sent in chunks is stored whole or not at all. A resent chunk
-- replaces itself. The chunks expire after ARGV[4] ms, should their commit never come.
--
-- Chunk number 0 drops every chunk staged by the call instead (its commit failed: a Redis
-- over maxmemory refused it, say): a DEL, which such a Redis lets through.
--
-- ARGV[1]  batch id    ARGV[2]  the call's nonce    ARGV[3]  chunk number (1, 2, ...; 0)
-- ARGV[4]  ms the chunks are kept
-- ARGV[5], ...  the chunk's job tuples (_batch.lua)
--
-- Returns: 1.

local staged = P .. 'batch:' .. ARGV[1] .. ':staged:' .. ARGV[2]
if ARGV[3] == '0' then
  redis.call('DEL', staged)
  return 1
end
redis.call('HSET', staged, ARGV[3], cjson.encode(tail(ARGV, 5)))
redis.call('PEXPIRE', staged, tonumber(ARGV[4]))
return 1
