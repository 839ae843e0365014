//! The one place that reads the fields of a `steledb::RecordedEvent`, whose
//! representation is being reworked (shared buffers, accessors): a change
//! there is a change here only.

use steledb::RecordedEvent;

pub(crate) fn event_type(event: &RecordedEvent) -> &str {
    event.event_type()
}

pub(crate) fn content_type(event: &RecordedEvent) -> &str {
    event.content_type()
}

pub(crate) fn data(event: &RecordedEvent) -> &[u8] {
    event.data()
}

pub(crate) fn metadata(event: &RecordedEvent) -> &[u8] {
    event.metadata()
}
