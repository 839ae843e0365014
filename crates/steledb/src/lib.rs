//! SteleDB: an event store over a durable, checksummed, group-committed log.
//!
//! ```no_run
//! use steledb::{ExpectedRevision, NewEvent, Store, StreamStart, Direction, Uuid};
//! let store = Store::open("./stele-data")?;
//! let event = NewEvent::json(Uuid::new_v4(), "OrderPlaced", br#"{"total":42}"#.to_vec());
//! store.append("order-1", ExpectedRevision::NoStream, vec![event])?;
//! let events = store.read_stream("order-1", StreamStart::Start, Direction::Forward, 100)?;
//! assert_eq!(events.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clock;
pub mod codec;
mod error;
mod fast_hash;
mod filter;
mod index;
pub mod limits;
mod metadata;
mod shared;
mod store;
mod subscription;
mod types;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AppendError, IndexError, OpenError, ReadError};
pub use filter::{EventFilter, Pattern};
pub use limits::Limits;
pub use metadata::StreamMetadata;
pub use stele_log::{DiskStorage, Fault, FaultyStorage, Storage};
pub use store::{log_sync_bucket_bound_seconds, AllScan, AllSlice, LogCheck, OpenReport, Store, StoreConfig};
pub use subscription::{Subscription, SubscriptionMessage};
pub use types::*;
