//! The bus: carries numbered room events from whoever appended them to every
//! node with members in the room.
//!
//! Delivery over a bus may be lost, doubled or reordered (a network bus can
//! do all three); every event carries its room and sequence number so that
//! each node's [`Hub`] can drop what it already delivered and fill what it
//! missed from the room log. The in-process bus of a single node does none
//! of those things, but the hub does not rely on that. The bus of a cluster
//! is [`crate::cluster::RedisBus`].
//!
//! Notices (`member_joined`, `member_left`) are unnumbered: the node that
//! decides one tells its own members through its hub and the other nodes'
//! through [`Bus::notify`], so that each member hears it once.

use std::sync::Arc;

use chat_protocol::{ChatMessage, ServerEvent};

use crate::hub::Hub;
use crate::outbox::Frame;

/// One committed message on its way to the members of its room.
#[derive(Debug, Clone)]
pub struct RoomEvent {
    /// The room.
    pub room: Arc<str>,
    /// The message's sequence number in the room.
    pub seq: u64,
    /// The `new_message` frame, serialized once for every member on every node.
    pub frame: Frame,
}

impl RoomEvent {
    /// The event that announces a stored message.
    pub fn message(message: ChatMessage) -> Self {
        Self {
            room: message.room.as_str().into(),
            seq: message.seq,
            frame: ServerEvent::NewMessage(message).to_json().into(),
        }
    }
}

/// Publishes committed room events to every node. Called in commit order by
/// the room log's completions, so it must not block: a networked bus queues
/// the event for a publisher task of its own.
pub trait Bus: Send + Sync + 'static {
    /// Sends `event` to every node with members in its room.
    fn publish(&self, event: RoomEvent);

    /// Sends an unnumbered notice (`member_joined`, `member_left`) to the
    /// members of `room` on every *other* node: the caller tells this
    /// node's members itself, through its hub. Must not block either.
    fn notify(&self, room: &str, frame: Frame);
}

/// The bus of a single node: straight into this node's hub.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    /// A bus that delivers to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: RoomEvent) {
        self.hub.publish(event);
    }

    /// There is no other node.
    fn notify(&self, _room: &str, _frame: Frame) {}
}
