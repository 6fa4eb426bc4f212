"""Whose fault is a failure: the infrastructure's (database, broker, network) or the items'?

Only an item's fault may use up a chunk's attempts or send it through poison bisection
(worker/poison.py): a database that is down while a chunk is on its last attempt must never turn
healthy items into `scoring_failed`. An infrastructure failure gives the chunk back untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# Lost or refused connections, a server restarting or failing over, a pool or socket timeout.
# (IntegrityError, DataError and the like are not here: those come from what is being written.)
INFRASTRUCTURE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from (`raise … from …`). Not the implicit context: an item's
    error raised while some earlier connection error was being handled is still the item's."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__


def is_infrastructure(exc: BaseException) -> bool:
    """True when `exc`, or an exception it was raised from, says a service was unreachable."""
    for e in _chain(exc):
        if isinstance(e, INFRASTRUCTURE):
            return True
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
    return False
