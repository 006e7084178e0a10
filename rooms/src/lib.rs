//! The message path of chat-server, apart from HTTP and sockets.
//!
//! Ordering comes from sequence numbers, not from a lock:
//! - [`room_log`]: the [`RoomLog`] assigns each room's next seq and commits
//!   (SQLite for one node, PostgreSQL for a cluster: one writer that
//!   group-commits; reads on their own connections).
//! - [`bus`]: carries each committed, numbered event to every node with
//!   members in its room (in-process for a single node; over Redis in
//!   [`cluster`]).
//! - [`hub`]: this node's members per room; delivers each room's events in
//!   seq order, drops duplicates, fills gaps from the log and resyncs a
//!   room when the bus may have lost events; tells the bus which rooms it
//!   wants through an [`interest`] set.
//! - [`presence`]: who is in which room (in memory; shared through Redis in
//!   [`cluster`]).
//! - [`cluster`]: several nodes over one shared log and one Redis.
//! - `catch_up`: one algorithm for a plain join and a resume.
//! - [`node`]: the above put together, as a connection uses it.
//! - [`outbox`] and [`close`]: a connection's queue and its one-shot close
//!   signal, which the hub holds for each member.
//! - [`metrics`]: what the path counts, as handles a server registers.
//!
//! Data path: append -> commit -> ack to the sender and publish on the bus
//! (in commit order) -> each node's hub -> `try_send` of the shared bytes to
//! every member's bounded queue.

pub mod bus;
mod catch_up;
pub mod close;
pub mod cluster;
pub mod hub;
pub mod interest;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod presence;
pub mod room_log;

pub use close::{CloseReason, Closer};
pub use hub::{ConnId, Hub, Peer};
pub use node::{Node, RoomPage};
pub use outbox::{Frame, Inbox, Outbox};
pub use room_log::{Durability, LogError, PgLog, Retention, RoomLog, SqliteLog, Storage};
