"""The scheduling rule of every task queue, defined once: priority, then arrival, with optional aging.

Priority 1 is the most urgent (the paper's convention). With ``aging_s`` = 0 (the paper) the order is
strict: priority, then arrival. With ``aging_s`` > 0 a waiting task gains one level per ``aging_s``
seconds: its effective priority after waiting ``w`` seconds is ``priority - w / aging_s`` (continuous,
unbounded below). Since ``w = now - arrival`` with ``now`` common to all waiting tasks, ordering by
effective priority at any instant is ordering by the static number ``priority * aging_s + arrival``
(a "virtual deadline"), which therefore never has to be recomputed while tasks wait.

One :class:`QueueOrder` gives each user of the rule what it needs:

* the Redis queue (``services/orchestrator``): :attr:`QueueOrder.LUA` defines the Lua function
  ``queue_score`` that the submit script concatenates, and :meth:`QueueOrder.lua_args` the arguments
  it takes; the ZSET then holds :meth:`QueueOrder.score` of every task (lowest is served first);
* the simulator (``edgesplit/sim/queue.py``) and the cloud gate (``services/orchestrator/cloudgate``):
  :meth:`QueueOrder.key`, a tuple that sorts the same way.

Both encode the same order: ``score`` is ``priority * 2^40 + seq`` in strict mode (``seq`` the arrival
counter: exact in a double for 2^40 submits) and ``priority * aging_s + (arrival - epoch)`` with aging.
``tests/integration/test_queue_order_lua.py`` checks the Lua running in a real Redis against both.

A script that takes several tasks at once (issue 17: "up to N tasks of one model in priority order")
needs nothing new: the scores are static, so ``ZPOPMIN q N`` (or ``ZRANGE q 0 N-1`` then a filter by
model) yields them in this order; a script that has to (re)compute a score concatenates
:attr:`QueueOrder.LUA` and passes :meth:`QueueOrder.lua_args` like the submit script does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class QueueOrder:
    """The queue order for one ``aging_s`` (seconds per level of aging; 0 = strict priorities)."""

    aging_s: float = 0.0

    #: Strict mode: the priority's weight in the score, above any arrival counter.
    STRICT_SHIFT: ClassVar[int] = 2**40

    #: ``queue_score(prio, now, aging, shift, epoch_key, seq_key)``: the score of a task entering the
    #: queue at ``now`` (a string of Unix seconds). With aging, ``epoch_key`` holds the time origin
    #: (set by the first aged submit, so scores stay small); in strict mode ``seq_key`` counts arrivals.
    LUA: ClassVar[str] = """
local function queue_score(prio, now, aging, shift, epoch_key, seq_key)
  if aging > 0 then
    local epoch = redis.call('GET', epoch_key)
    if not epoch then
      epoch = now
      redis.call('SET', epoch_key, epoch)
    end
    return prio * aging + (tonumber(now) - tonumber(epoch))
  end
  return prio * shift + redis.call('INCR', seq_key)
end
"""

    def __post_init__(self) -> None:
        if not self.aging_s >= 0:
            raise ValueError(f"aging_s is {self.aging_s}; expected >= 0 seconds per level (0 = strict)")

    @property
    def aging(self) -> bool:
        return self.aging_s > 0

    def effective_priority(self, priority: int, wait_s: float) -> float:
        """Priority after waiting ``wait_s`` seconds: one level better per ``aging_s`` (if aging)."""
        return float(priority) if not self.aging else priority - wait_s / self.aging_s

    def score(self, priority: int, arrival_s: float, seq: int) -> float:
        """The one number the Redis queue stores (lowest first): ``priority * 2^40 + seq`` (strict) or
        ``priority * aging_s + arrival_s`` (aging; ``arrival_s`` from the queue's epoch, seconds).
        ``seq`` is the arrival counter (1, 2, ...)."""
        if self.aging:
            return priority * self.aging_s + arrival_s
        return float(priority * self.STRICT_SHIFT + seq)

    def key(self, priority: int, arrival_s: float, seq: int) -> tuple[float, float, int]:
        """Sort key, lowest first: the score's order as a tuple (no epoch or counter range needed).
        Strict: (priority, arrival, seq); aging: (priority * aging_s + arrival, arrival, seq)."""
        first = priority * self.aging_s + arrival_s if self.aging else float(priority)
        return (first, arrival_s, seq)

    def lua_args(self) -> tuple[str, str]:
        """The ``aging`` and ``shift`` arguments of :attr:`LUA`'s ``queue_score`` (as script ARGV)."""
        return (repr(float(self.aging_s)), str(self.STRICT_SHIFT))
