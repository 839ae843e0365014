"""The official KurrentDB Python client (kurrentdbclient) against SteleDB.

Usage: python_client.py HOST:PORT. Exits non-zero on the first failed check.
"""

import sys
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import NotFoundError, WrongCurrentVersionError

address = sys.argv[1]
client = KurrentDBClient(uri=f"kurrentdb://{address}?tls=false")
stream = f"order-{uuid.uuid4()}"

placed = NewEvent(type="OrderPlaced", data=b'{"total": 42}')
paid = NewEvent(type="OrderPaid", data=b'{"amount": 42}')
client.append_to_stream(stream, events=[placed], current_version=StreamState.NO_STREAM)
client.append_to_stream(stream, events=[paid], current_version=0)

recorded = list(client.get_stream(stream))
assert [e.type for e in recorded] == ["OrderPlaced", "OrderPaid"], recorded
assert [e.stream_position for e in recorded] == [0, 1], recorded
assert recorded[0].data == b'{"total": 42}'
assert recorded[0].id == placed.id

try:
    client.append_to_stream(stream, events=[NewEvent(type="Late", data=b"{}")], current_version=0)
    raise AssertionError("a stale expected version must be refused")
except WrongCurrentVersionError:
    pass

try:
    list(client.get_stream(f"missing-{uuid.uuid4()}"))
    raise AssertionError("reading a missing stream must fail")
except NotFoundError:
    pass

# The default catch-up subscription excludes system events with a
# negative look-ahead regex; it must still deliver our events.
subscription = client.subscribe_to_all(from_end=False)
seen = []
for event in subscription:
    if event.stream_name == stream:
        seen.append(event.type)
    if len(seen) == 2:
        break
subscription.stop()
assert seen == ["OrderPlaced", "OrderPaid"], seen
client.close()
print("python client: ok")
