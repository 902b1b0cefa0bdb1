-- withdraw: a worker ends its offer (see _offers.lua); the jobs handed to it that it did
-- not start go back to the head of their queue, and other workers are woken for them.
--
-- ARGV[1]  "<the worker's inbox> <n>": its offer ends if numbered n or lower (see
--          end_offer in _offers.lua)
-- ARGV[2], ...  tokens of the offer's jobs the worker started
--
-- Returns: how many jobs went back to the queue.

even_when_full()
local back = end_offer(ARGV[1], tail(ARGV, 2), now_ms())
flush_pending()
if back > 0 then
  wake()
end
return back
